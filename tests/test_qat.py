"""Quantization-aware training (``ghostnets train --qat``): the int8 file runs int8 kernels, its agreement and top-1
recomputed here from an independently built float model equal the run's report, a run stopped after an epoch and
resumed ends where an unbroken run ends, and settings that cannot work are refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import ghostnets
from ghostnets.cli import main
from ghostnets.data import FashionMNIST
from ghostnets.data.transforms import fashion_mnist_input
from ghostnets.runtime.sessions import openvino_core
from ghostnets.train import ConfigError, TrainConfig, load_recipe, train, update_config
from ghostnets.train.qat import qat_settings
from ghostnets.train.state import load_state
from subsets import first_images

pytest.importorskip("nncf")
ort = pytest.importorskip("onnxruntime")

SUBSET = Path(__file__).parent / "data" / "fashion_mnist_subset.npz"
FAST = ["--no-progress", "batch_size=32", "threads=2", "qat_calib_images=64", "workers=0"]


@pytest.fixture(scope="module")
def float_weights(tmp_path_factory) -> Path:
    """A float ghostnet_050 trained for 3 epochs on the committed subset (about 38 % top-1, answers spread over the
    classes, so agreement measures something): the weights a run writes, with its class names and input."""
    config = update_config(load_recipe("quick"), {"model": "ghostnet_050", "data": str(SUBSET), "batch_size": 32,
                                                  "epochs": 3, "lr": 0.8, "threads": 2, "workers": 0}, "test")
    out = tmp_path_factory.mktemp("float")
    train(config, out, progress_bar=False)
    return out / "last.safetensors"


def held_out() -> tuple[torch.Tensor, np.ndarray]:
    data, transform = FashionMNIST("test", file=SUBSET), fashion_mnist_input(32, 1).transform()
    return torch.stack([transform(data[i][0]) for i in range(len(data))]), np.array([data[i][1] for i in
                                                                                     range(len(data))])


@pytest.mark.slow
def test_qat_writes_an_int8_file_whose_figures_hold_when_recomputed(float_weights, tmp_path, capsys):
    out = tmp_path / "qat"
    assert main(["train", "--qat", str(float_weights), "--data", str(SUBSET), "--out", str(out), *FAST,
                 "epochs=1"]) == 0
    printed = capsys.readouterr().out
    assert "quantization-aware training of ghostnet_050" in printed and "onnxruntime: int8 top-1" in printed
    assert (out / "last_int8.onnx").is_file() and (out / "best_int8.onnx").is_file()
    assert not (out / "last.safetensors").exists()

    # int8 in the file: every convolution outside the SE blocks (which NNCF's SE_BLOCK ignored pattern leaves in
    # float) reads a dequantized int8 weight, and ONNX Runtime fuses them to QLinearConv
    proto = onnx.load(str(out / "last_int8.onnx"))
    produced = {o: n for n in proto.graph.node for o in n.output}
    convs = [n for n in proto.graph.node if n.op_type == "Conv" and "/se/" not in n.name]
    assert len(convs) > 60 and all(c.input[1] in produced for c in convs)
    dequantized = [produced[c.input[1]] for c in convs]
    assert {d.op_type for d in dequantized} == {"DequantizeLinear"}
    quantized = [produced[d.input[0]] for d in dequantized]  # QuantizeLinear(float weight, scale, int8 zero point)
    assert {q.op_type for q in quantized} == {"QuantizeLinear"}
    zero_types = {produced[q.input[2]].attribute[0].t.data_type for q in quantized}
    assert zero_types == {onnx.TensorProto.INT8}
    # dense convs in half the int8 range (qat_overflow_fix=enable: |w / scale| <= 64 per output channel, the range
    # used), depthwise ones, whose kernels do not add product pairs in int16, in the full range
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}

    def constant(name: str) -> np.ndarray:
        node = produced.get(name)
        return onnx.numpy_helper.to_array(node.attribute[0].t) if node is not None else initializers[name]

    levels = {True: [], False: []}
    for conv, q in zip(convs, quantized):
        grouped = any(a.name == "group" and a.i > 1 for a in conv.attribute)
        levels[grouped].append(np.abs(constant(q.input[0]) / constant(q.input[1]).reshape(-1, 1, 1, 1)).max())
    assert min(levels[False]) >= 60 and max(levels[False]) <= 64.5 and len(levels[False]) > 20
    assert min(levels[True]) >= 120 and len(levels[True]) > 20
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["ghostnets.int8"])["method"] == "qat" and meta["ghostnets.model"] == "ghostnet_050"
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(str(out / "last_int8.onnx"), options, providers=["CPUExecutionProvider"])
    optimized = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert optimized.count("QLinearConv") >= len(convs) // 2

    # the report, recomputed: the float model rebuilt from its file, the int8 file in each runtime
    x, labels = held_out()
    reference = ghostnets.create_model("ghostnet_050", checkpoint_path=float_weights).eval()
    with torch.inference_mode():
        float_top1 = reference(x).argmax(1).numpy()
    summary = json.loads((out / "summary.json").read_text())
    figures = summary["int8"]
    assert figures["images"] == len(x) == 100
    assert figures["float32_top1"] == pytest.approx(100 * (float_top1 == labels).mean())
    assert len(set(float_top1)) > 1  # the agreement below measures something
    runs = {"onnxruntime": lambda b: session.run(None, {"input": b})[0],
            "openvino": openvino_core().compile_model(str(out / "last_int8.onnx"), "CPU",
                                                      {"INFERENCE_PRECISION_HINT": "f32"})}
    for runtime, run in runs.items():
        int8_top1 = np.concatenate([np.asarray(run(x[i:i + 16].numpy())[0] if runtime == "openvino"
                                               else run(x[i:i + 16].numpy())) for i in range(0, len(x), 16)])
        int8_top1 = int8_top1.argmax(1)
        assert figures[runtime]["agreement"] == pytest.approx(100 * (int8_top1 == float_top1).mean())
        assert figures[runtime]["int8_top1"] == pytest.approx(100 * (int8_top1 == labels).mean())
        assert figures[runtime]["int8_ms"] > 0 and figures[runtime]["float32_ms"] > 0
    assert 0 <= summary["before_qat"]["agreement"] <= 100 and summary["final_agreement"] is not None


@pytest.mark.slow
def test_a_qat_run_stopped_mid_epoch_resumes_to_where_an_unbroken_run_ends(float_weights, tmp_path, monkeypatch):
    """Ctrl-C after the first of two steps (the trainer's own SIGINT handling), then --resume: the quantizers are
    placed again and the saved weights and scales overwrite them, so the end is bit-exact."""
    import signal

    import ghostnets.train.trainer as trainer_module

    tiny = first_images(tmp_path / "tiny.npz", 96, 40)
    config = qat_settings(load_recipe("qat"), float_weights)
    for key, value in {"data": str(tiny), "batch_size": 48, "epochs": 1, "threads": 2,
                       "qat_calib_images": 32, "workers": 0, "qat_float_layers": 1}.items():
        setattr(config, key, value)
    unbroken = tmp_path / "unbroken"
    train(config, unbroken, progress_bar=False)

    step = trainer_module.train_step

    def step_then_interrupt(*args, **kwargs):
        result = step(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)
        return result

    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, "train_step", step_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            train(config, tmp_path / "stopped", progress_bar=False)
    assert load_state(tmp_path / "stopped" / "checkpoint.pth")["step"] == 1
    train(config, tmp_path / "stopped", resume=True, progress_bar=False)
    a, b = (load_state(d / "checkpoint.pth")["state_dict"] for d in (unbroken, tmp_path / "stopped"))
    assert a.keys() == b.keys() and any("nncf" in k for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert (tmp_path / "stopped" / "last_int8.onnx").read_bytes() == (unbroken / "last_int8.onnx").read_bytes()
    # the quantizer kept off was chosen once and stayed off through the resume; the file writes no QDQ pair for
    # it: one QuantizeLinear per quantizer still on
    kept = [json.loads((d / "summary.json").read_text())["kept_in_float"] for d in (unbroken, tmp_path / "stopped")]
    assert kept[0] == kept[1] and len(kept[0]) == 1
    enabled = [k for k in a if k.endswith(".enabled")]
    proto = onnx.load(str(unbroken / "last_int8.onnx"))
    assert sum(int(a[k].item() == 0) for k in enabled) == 1
    assert [n.op_type for n in proto.graph.node].count("QuantizeLinear") == len(enabled) - 1


def test_settings_qat_cannot_honour_are_refused(float_weights, tmp_path, capsys):
    def refused(*args: str) -> str:
        assert main(["train", *args, "--out", str(tmp_path / "run"), "--no-progress"]) == 2
        return capsys.readouterr().err

    assert "no such file" in refused("--qat", str(tmp_path / "missing.safetensors"))
    plain = tmp_path / "plain.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(plain))
    assert "records no model name" in refused("--qat", str(plain))
    assert "supports neither model_ema nor compile" in refused("--qat", str(float_weights), "model_ema=true")
    assert "qat_overflow_fix must be one of enable" in refused("--qat", str(float_weights), "qat_overflow_fix=half")
    assert "drop --model" in refused("--qat", str(float_weights), "--model", "ghostnet_100")
    assert "drop --qat" in refused("--qat", str(float_weights), "--resume")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="qat_calib_images"):
        qat_settings(TrainConfig(qat_calib_images=0), float_weights)
    with pytest.raises(ConfigError, match="qat_float_layers must be >= 0"):
        qat_settings(TrainConfig(qat_float_layers=-1), float_weights)


@pytest.mark.slow
def test_the_quantizer_kept_in_float_is_the_one_whose_rounding_wrecks_the_model():
    """A hand-built outlier: the stem's channel 0 is 1,000x its other channels and the next conv reads it 1,000x
    smaller, so the float model is ordinary but the per-tensor int8 step of the stem's output (about 1,000 / 255)
    rounds the other three channels to nothing. That quantizer is the one to keep in float, and switching it off
    brings the fake-quantized logits back near the float ones."""
    from torch import nn

    from ghostnets.train.qat import fake_quantized
    from ghostnets.train.qat_float import disabled_quantizers, keep_in_float

    torch.manual_seed(0)

    class Outlier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.mix, self.head = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 8, 1), nn.Linear(8, 5)
            with torch.no_grad():
                self.stem.weight[0] *= 1000
                self.stem.bias[0] *= 1000
                self.mix.weight[:, 0] /= 1000

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.mix(torch.relu(self.stem(x)))).mean((2, 3)))

    model = Outlier().eval()
    calib = [torch.randn(16, 1, 8, 8) for _ in range(2)]
    quantized = fake_quantized(model, calib, "enable")
    x = torch.randn(32, 1, 8, 8)
    with torch.no_grad():
        expected = model(x)
        before = float((quantized(x) - expected).norm() / expected.norm())
        kept = keep_in_float(quantized, model, calib, 1)
        assert kept == ["output of the model (relu)"] == disabled_quantizers(quantized, x)
        off = [n for n, m in quantized.named_modules() if hasattr(m, "is_enabled_quantization")
               and not m.is_enabled_quantization()]
        assert len(off) == 1 and off[0].endswith("/relu/0__0.0"), off  # the stem's relu, not mix's
        after = float((quantized(x) - expected).norm() / expected.norm())
    assert before > 0.2 and after < before / 4, (before, after)


@pytest.mark.slow
def test_the_int8_file_computes_its_model_where_training_moved_weights_past_their_range(tmp_path):
    """NNCF quantizes weights to -127..127 steps of their scale, and ONNX's QuantizeLinear saturates to -128..127:
    a weight that QAT moved past its scale must reach the file already on the training grid, or the file rounds it
    to -128 steps where the model used -127 (what made a 224 px QAT ShuffleNet V2 file agree with float32 on 98.85 %
    of images where its model agreed on 99.15 %). Here the weights are moved by hand; the file's weights must lie on
    the grid, and the file, run by ONNX Runtime with every graph optimisation off (QDQ's arithmetic as specified),
    must compute the fake-quantized model up to the rounding flips a quantized network amplifies."""
    from ghostnets.train.qat import export_int8_onnx, fake_quantized

    torch.manual_seed(0)
    model = ghostnets.reparameterize(ghostnets.create_model("ghostnet_050", num_classes=10, in_chans=1)).eval()
    x, _ = held_out()
    quantized = fake_quantized(model, [x[:64]], "disable")  # 8-bit weights: -127..127
    with torch.no_grad():
        for conv in (m for m in quantized.modules() if isinstance(m, torch.nn.Conv2d)):
            conv.weight.mul_(1.25)  # some weights of every conv now lie past the scale their quantizer learned
    with torch.inference_mode():
        expected = quantized(x).numpy()
    path = export_int8_onnx(quantized, tmp_path / "int8.onnx", spec=fashion_mnist_input(32, 1),
                            class_names=[str(i) for i in range(10)], images=x[:32])

    proto = onnx.load(str(path))
    values = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    values.update({n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in proto.graph.node
                   if n.op_type == "Constant"})
    steps = []  # each weight in steps of its scale
    for node in proto.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in values:  # a weight's (activations are computed)
            weight, scale = values[node.input[0]], values[node.input[1]]
            steps.append(weight / scale.reshape(-1, *[1] * (weight.ndim - 1)))
    assert len(steps) > 60  # every conv and the classifier but the SE blocks' (NNCF leaves those in float)
    assert max(np.abs(s).max() for s in steps) <= 127 + 1e-3  # on the training grid: never rounded to -128
    assert max(np.abs(s - np.round(s)).max() for s in steps) < 1e-3
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    exact = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = np.concatenate([exact.run(None, {"input": x[i:i + 25].numpy()})[0] for i in range(0, len(x), 25)])
    assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < 0.05
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.97


@pytest.mark.slow
def test_activations_are_quantized_per_tensor_so_onnx_runtime_runs_the_file(tmp_path):
    """Left to itself NNCF quantizes some of RepGhostNet's activations per channel; ONNX Runtime fuses the QDQ pairs
    around a conv to QLinearConv, which takes one output zero point, and fails at run time. A QAT run of
    repghostnet_100 stopped so at its first epoch's end; with per-tensor activations both runtimes run the file."""
    from nncf.torch.quantization.layers import AsymmetricQuantizer

    from ghostnets.train.qat import export_int8_onnx, fake_quantized
    from ghostnets.train.qat_float import quantizers

    torch.manual_seed(0)
    model = ghostnets.reparameterize(ghostnets.create_model("repghostnet_050", num_classes=10, in_chans=1)).eval()
    x, _ = held_out()
    quantized = fake_quantized(model, [x[:64]], "disable")
    activations = [q for q in quantizers(quantized) if isinstance(q, AsymmetricQuantizer)]
    assert len(activations) > 50 and all(tuple(q.scale_shape) == (1,) for q in activations)
    path = export_int8_onnx(quantized, tmp_path / "int8.onnx", spec=fashion_mnist_input(32, 1),
                            class_names=[str(i) for i in range(10)], images=x[:32])  # checked in both runtimes
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x[:8].numpy()})[0]
    assert got.shape == (8, 10) and np.isfinite(got).all()

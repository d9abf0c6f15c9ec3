"""ONNX and OpenVINO export: the files compute what the *training-form* PyTorch model computes, carry their
preprocessing and labels, and nothing is left behind when an export fails."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import ghostnets
import ghostnets.runtime.export as export_module
from ghostnets.cli import main
from ghostnets.data.transforms import InputSpec
from ghostnets.runtime import ExportError, export_model
from ghostnets.runtime.sessions import openvino_core
from ghostnets.transforms import randomize_batchnorm

pytestmark = pytest.mark.runtimes  # run in their own pytest process: see the Makefile's test target

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
ov = pytest.importorskip("openvino")

SUBSET = Path(__file__).parent / "data" / "fashion_mnist_subset.npz"
SPEC = InputSpec(size=64, resize=73)


def trained_looking(name: str) -> torch.nn.Module:
    """Training form with non-trivial BatchNorm statistics, so a wrong fold would show."""
    return randomize_batchnorm(ghostnets.create_model(name).eval(), seed=3)


def reference(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model(x).numpy()


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_ghostified_torchvision_model_exports(fmt, tmp_path):
    """The plug-and-play path end to end: ghostify a torchvision model, export; the file computes the training form
    (the Ghost modules' own BNs and the model's BNs after them all folded on the way)."""
    from ghostnets.transforms import ghostify

    model = randomize_batchnorm(ghostify(ghostnets.create_model("torchvision:resnet18", num_classes=5)).eval(), seed=3)
    out = tmp_path / ("m.onnx" if fmt == "onnx" else "m.xml")
    export_model(model, out, format=fmt, spec=SPEC, class_names=list("abcde"))
    x = torch.randn(1, 3, 64, 64)
    if fmt == "onnx":
        got = ort.InferenceSession(str(out)).run(None, {"input": x.numpy()})[0]
    else:
        got = openvino_core().compile_model(str(out), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(x.numpy())[0]
    np.testing.assert_allclose(got, reference(model, x), rtol=0, atol=1e-4 * max(1, np.abs(got).max()))


@pytest.mark.parametrize("name", ["repghostnet_050", "ghostnetv2_100", "resnext50_32x4d", "wrn16_8_cifar",
                                  "ecaresnet50", "skresnext50_32x4d", "res2net50_26w_4s"])
def test_onnx_file_computes_the_training_form(name, tmp_path):
    model = trained_looking(name)
    report = export_model(model, tmp_path / "m.onnx", format="onnx", spec=SPEC, class_names=["a", "b"])
    assert set(report.checks) == {"random"} and report.files == [tmp_path / "m.onnx"]
    x = torch.randn(1, 3, 64, 64)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, reference(model, x), rtol=0, atol=1e-4 * max(1, np.abs(got).max()))
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert props["ghostnets.model"] == name and json.loads(props["ghostnets.class_names"]) == ["a", "b"]
    assert InputSpec.from_dict(json.loads(props["ghostnets.input"])) == SPEC
    graph_ops = {node.op_type for node in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "BatchNormalization" not in graph_ops  # the deploy form went out


def test_openvino_file_with_dynamic_batch_computes_the_training_form(tmp_path):
    model = trained_looking("ghostnet_050")
    real = torch.randn(5, 3, 80, 80)  # resized to the export size for the check
    report = export_model(model, tmp_path / "m.xml", format="openvino", spec=SPEC, real_images=real, dynamic_batch=True,
                    input_size=(64, 96))
    assert set(report.checks) == {"random", "real"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]
    compiled = openvino_core().compile_model(str(tmp_path / "m.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x = torch.randn(3, 3, 64, 96)
    got = compiled([x.numpy()])[compiled.output(0)]
    np.testing.assert_allclose(got, reference(model, x), rtol=0, atol=1e-4 * max(1, np.abs(got).max()))
    info = openvino_core().read_model(str(tmp_path / "m.xml")).get_rt_info()
    assert "ghostnets" in info


def test_a_failed_check_leaves_nothing_and_an_existing_file_is_kept(tmp_path, monkeypatch):
    model = trained_looking("ghostnet_050")
    monkeypatch.setattr(export_module, "is_equivalent", lambda difference, scale: False)
    for fmt, name in (("onnx", "m.onnx"), ("openvino", "m.xml")):
        with pytest.raises(ExportError, match="does not match PyTorch.*nothing was written"):
            export_model(model, tmp_path / name, format=fmt, spec=SPEC)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    (tmp_path / "m.onnx").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="--force"):
        export_model(model, tmp_path / "m.onnx", format="onnx", spec=SPEC)
    assert (tmp_path / "m.onnx").read_bytes() == b"mine"
    with pytest.raises(ExportError, match="too small"):
        export_model(model, tmp_path / "n.onnx", format="onnx", spec=SPEC, input_size=(16, 16))
    with pytest.raises(ExportError, match="writes a .onnx file"):
        export_model(model, tmp_path / "n.xml", format="onnx", spec=SPEC)


def test_export_command_checks_a_trained_checkpoint_on_real_images(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(SUBSET, cache / "fashion_mnist.npz")
    monkeypatch.setenv("GHOSTNETS_CACHE", str(cache))
    model = randomize_batchnorm(ghostnets.create_model("ghostnet_050", num_classes=10, in_chans=1), seed=1)
    ghostnets.save_checkpoint(model, tmp_path / "fm.safetensors", class_names=list("abcdefghij"))
    out = tmp_path / "fm.onnx"
    assert main(["export", "--checkpoint", str(tmp_path / "fm.safetensors"), "--format", "onnx", "--out",
                 str(out)]) == 0
    printed = capsys.readouterr().out
    assert "real images: max |Δ logits|" in printed and "deploy form" in printed
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["ghostnets.input"])["channels"] == 1
    assert json.loads(props["ghostnets.class_names"])[0] == "a"
    assert main(["export", "--checkpoint", str(tmp_path / "fm.safetensors"), "--format", "onnx", "--out",
                 str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["export", "--format", "onnx", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "name a model" in capsys.readouterr().err
    assert main(["export", "ghostnet_050", "--format", "onnx", "--out", str(tmp_path / "y.onnx"), "--calib",
                 str(tmp_path / "cache")]) == 2
    assert "holds no image files" in capsys.readouterr().err

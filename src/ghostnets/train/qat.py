"""Quantization-aware training through NNCF for PyTorch: ``ghostnets train --qat CHECKPOINT``.

Fake quantization in training (Jacob et al., CVPR 2018, arXiv 1712.05877; Krishnamoorthi, arXiv 1806.08342): a
trained float checkpoint's deploy form (re-parameterized, BatchNorms folded, ShuffleNet V2 without its channel
shuffles: the graph ``ghostnets export`` gives the runtimes) gets NNCF's quantizers where NNCF's post-training
quantization puts them (``nncf.quantize``, preset MIXED: symmetric per-channel int8 weights, asymmetric int8
activations, ranges from ``qat_calib_images`` training images, fast bias correction; weights in half the int8 range
by default, ``qat_overflow_fix``, :data:`OVERFLOW_FIXES`), then trains for a few epochs; the quantizers' ranges
train with the weights (straight-through estimates, learnable scales). The ``qat`` recipe distils from the float model
itself (the teacher is the checkpoint, the label loss is off): what it asks of int8 is to predict what float32
predicts.

Each evaluation also reports ``agreement``: the share of held-out images whose int8 top-1 is the float model's. Where
a float run writes ``last.safetensors`` / ``best.safetensors``, a QAT run writes ``last_int8.onnx`` /
``best_int8.onnx``: QuantizeLinear/DequantizeLinear pairs (NNCF's ``ONNX_QUANTIZE_DEQUANTIZE_PAIRS`` export mode),
which ONNX Runtime runs with its int8 kernels and OpenVINO reads as FakeQuantize and runs as int8. Each file is
checked against the fake-quantized model on held-out images, in every installed runtime, before it is put in place.
At the end the run measures both runtimes on the held-out split (:func:`int8_figures`): agreement, top-1 of float32
and int8, batch-1 latency of both (:func:`agreement_figures` alone for agreement on another split).

NNCF's CPU quantizers are a C++ torch extension it compiles on first use (about a minute on 2 cores, cached under
``~/.cache/torch_extensions``); NNCF's 60 s limit on that build is raised here to 600 s
(``NNCF_EXTENSION_LOAD_TIMEOUT``, which the environment may set).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write
from ..checkpoint import read_metadata
from ..data.transforms import InputSpec
from ..errors import GhostnetsError
from ..factory import create_model
from ..record import record_of
from ..transforms import reparameterize
from ..transforms.shuffle_free import without_channel_shuffles
from .config import ConfigError, TrainConfig, update_config
from .qat_float import keep_in_float, quantizers

QAT_RECIPE = "qat"
OVERFLOW_FIXES = ("enable", "first_layer_only", "disable")
"""NNCF's ``OverflowFix``: which conv weights use half of the int8 range (7 bits). ONNX Runtime's u8s8 kernels on
x86 without VNNI add pairs of u8 x s8 products in saturating int16; with full-range weights they computed a
ghostnet_050 QAT file 20 % (relative L2) away from its model on an AMD EPYC with AVX2, 1 % on a VNNI Xeon."""
MAX_RELATIVE_ERROR = 0.1
"""How far an int8 runtime's logits may be from the fake-quantized model's (relative L2). With the weights exported on
their training grid (:func:`_forward_finding_weight_quantizers`), the file computed exactly (ONNX Runtime with graph
optimizations off) is 2.2 % away on the tests' ghostnet_050 and 2.5 % on a 224 px QAT shufflenetv2_x1_0, the runtimes
2.5-2.6 %: a value within float rounding of a step boundary rounds the other way, and the quantizers after it amplify
the flip. Before that fix, files were 4.6-5.8 % away; runtimes whose int8 kernels saturate were 21 % away
(:data:`OVERFLOW_FIXES`)."""


class QatError(GhostnetsError, RuntimeError):
    """A quantization-aware run that cannot be set up, or an int8 file that does not compute its model."""


def qat_settings(config: TrainConfig, checkpoint: str | Path) -> TrainConfig:
    """``config`` set to fine-tune ``checkpoint`` quantization-aware: its model, its input size and channels, and the
    float model as the teacher unless ``config`` names another."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ConfigError(f"--qat {checkpoint}: no such file; give the float weights a run wrote "
                          "(RUN/best.safetensors or RUN/last.safetensors)")
    meta = read_metadata(checkpoint)
    if not meta.get("model"):
        raise ConfigError(f"--qat {checkpoint}: the file records no model name; give weights ghostnets wrote "
                          "(a run's .safetensors, or ghostnets convert's output)")
    check_qat(config)
    values: dict = {"qat_from": str(checkpoint), "model": meta["model"]}
    spec: InputSpec | None = meta.get("input")
    if spec is not None:
        values.update(img_size=spec.size, bundled_size=spec.size, bundled_channels=spec.channels)
    if config.teacher is None:
        values.update(teacher=meta["model"], teacher_checkpoint=str(checkpoint))
    return update_config(config, values, f"--qat {checkpoint}")


def check_qat(config: TrainConfig) -> None:
    """Refuse settings a quantization-aware run cannot honour, before anything is built."""
    if config.model_ema or config.compile:
        raise ConfigError("quantization-aware training supports neither model_ema nor compile (the int8 file is made "
                          "from the trained model itself); set model_ema=false compile=false")
    if config.qat_calib_images < 1:
        raise ConfigError(f"qat_calib_images must be >= 1, got {config.qat_calib_images}")
    if config.qat_float_layers < 0:
        raise ConfigError(f"qat_float_layers must be >= 0 (how many quantizers stay in float), got "
                          f"{config.qat_float_layers}")
    if config.qat_overflow_fix not in OVERFLOW_FIXES:
        raise ConfigError(f"qat_overflow_fix must be one of {', '.join(OVERFLOW_FIXES)}, got "
                          f"{config.qat_overflow_fix!r}")


def first_images(batches, images: int) -> list[torch.Tensor]:
    """The first ``images`` images of ``batches`` (a run's loader), as the batches they came in."""
    kept, seen = [], 0
    for x, _, _ in batches:
        if x is None:
            continue
        kept.append(x[:images - seen])
        seen += len(kept[-1])
        if seen >= images:
            break
    return kept


def quantized_for_training(config: TrainConfig, data, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """The fake-quantized deploy form of ``config.qat_from`` to train, and the float deploy form it started from
    (frozen, on ``device``: the agreement reference)."""
    check_qat(config)
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "600")
    spec = data.input_spec
    float_model = create_model(config.model, num_classes=len(data.class_names), in_chans=spec.channels,
                               checkpoint_path=config.qat_from, channels_last=config.channels_last)
    recorded = record_of(float_model).input
    if recorded is not None and (recorded.size, recorded.channels) != (spec.size, spec.channels):
        raise ConfigError(f"--qat {config.qat_from} was trained on {recorded.channels}-channel {recorded.size} px "
                          f"images and this run's data gives {spec.channels}-channel {spec.size} px ones; set "
                          "bundled_size/bundled_channels (or img_size) to what it was trained on")
    deployed = without_channel_shuffles(reparameterize(float_model).eval())  # the graph ghostnets export writes
    data.train.set_epoch(0, 0)
    calib = first_images(data.train, config.qat_calib_images)
    quantized = fake_quantized(deployed, calib, config.qat_overflow_fix)
    # chosen again on a resume (same weights, same images, same choice): a switched-off quantizer's scale takes no
    # gradient, and the optimizer, built before the saved state is loaded, must see the parameters the run trained
    keep_in_float(quantized, deployed, calib, config.qat_float_layers)
    for p in deployed.parameters():
        p.requires_grad_(False)
    return quantized.to(device), deployed.to(device)


def fake_quantized(deployed: nn.Module, calib: list[torch.Tensor], overflow_fix: str) -> nn.Module:
    """A copy of ``deployed`` with NNCF's fake quantizers, placed and ranged as its post-training quantization does
    (preset MIXED, fast bias correction, ``calib``: a list of batches), with per-tensor activations.

    Per-tensor: left to itself NNCF quantizes 36 of repghostnet_100's 113 activations per channel (those its Ghost
    modules' cheap depthwise convs read, among others). OpenVINO runs such a file, but ONNX Runtime fuses the QDQ pairs
    around a conv to QLinearConv, which takes one output zero point, and fails at run time ("QLinearConv : result
    zero point must be a scalar or 1D tensor of size 1"), so the int8 file could not be checked and the run stopped at
    its first epoch's end."""
    from ..runtime.quantize import import_nncf, quiet_nncf

    nncf = import_nncf()
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
        QuantizationParameters,
    )

    advanced = AdvancedQuantizationParameters(overflow_fix=OverflowFix(overflow_fix),
                                              activations_quantization_params=QuantizationParameters(per_channel=False))
    with quiet_nncf(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the thread pool NNCF's extension loader leaves open
        quantized = nncf.quantize(copy.deepcopy(deployed), nncf.Dataset(calib), preset=nncf.QuantizationPreset.MIXED,
                                  subset_size=len(calib),  # NNCF counts dataset items: batches
                                  advanced_parameters=advanced)
        gc.collect()
    return quantized


def _runtime_runners(path: Path, threads: int | None = None) -> dict:
    """Batch runners for the ONNX file at ``path`` in each installed runtime."""
    from ..runtime.sessions import RuntimeUnavailableError, onnx_runner, openvino_runner

    runners = {}
    for runtime, make in (("onnxruntime", lambda: onnx_runner(path, threads, stop_spinning=True)),
                          ("openvino", lambda: openvino_runner(path, threads=threads))):
        with contextlib.suppress(RuntimeUnavailableError):  # not installed: the other runtime checks the file
            runners[runtime] = make()
    return runners


def _forward_finding_weight_quantizers(model: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, list[nn.Module]]:
    """The fake-quantized model's logits on ``x``, and its quantizers that quantize a parameter (the weights).

    Why they matter on export: NNCF quantizes weights to the narrow signed range (-127..127 steps of the scale) and,
    by default, exports the float weight into a QuantizeLinear that saturates to int8's -128..127. Where training
    moved a weight past its scale (as QAT does), the file then rounds it to -128 steps where the model used -127: a
    QAT shufflenetv2_x1_0 at 224 px exported so computed logits 4.6 % (relative L2) from its model and agreed with
    float32 on 98.85 % of 2,000 images, against the model's 99.15 %. Exported already quantized (NNCF's
    ``is_quantized_on_export``), the weights lie on the training grid, where QuantizeLinear is exact."""
    parameters = {p.data_ptr() for p in model.parameters()}
    found: list[nn.Module] = []

    def note(quantizer: nn.Module, args: tuple) -> None:
        if isinstance(args[0], torch.Tensor) and args[0].data_ptr() in parameters and quantizer not in found:
            found.append(quantizer)

    hooks = [q.register_forward_pre_hook(note) for q in quantizers(model)]
    try:
        logits = model(x).numpy()
    finally:
        for hook in hooks:
            hook.remove()
    return logits, found


def export_int8_onnx(model: nn.Module, path: str | Path, *, spec: InputSpec, class_names: list[str],
                     images: torch.Tensor, metadata: dict[str, str] | None = None) -> Path:
    """``model`` (fake-quantized by NNCF) as a QDQ ONNX file at ``path``, written atomically once every installed
    runtime computes it on ``images``: logits within :data:`MAX_RELATIVE_ERROR` of the model's (relative L2)."""
    from nncf.torch.quantization.layers import QuantizerExportMode

    from ..runtime.export import export_metadata, write_onnx_file
    from ..runtime.quantize import int8_metadata

    path = Path(path)
    module = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    was_training = module.training
    module.eval()
    cpu = copy.deepcopy(module).cpu()
    module.train(was_training)
    x = images.float().cpu().contiguous()
    with torch.inference_mode():
        expected, weight_quantizers = _forward_finding_weight_quantizers(cpu, x)
    for quantizer in quantizers(cpu):
        quantizer.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
    for quantizer in weight_quantizers:  # write the weights on the grid they trained on: see the function's note
        quantizer._is_quantized_on_export = True
    meta = {**export_metadata(module, spec, class_names),
            **int8_metadata({}, "onnx-qdq", 0, [], "qat"), **(metadata or {})}

    def write(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(prefix=".qat-export-", dir=path.parent) as work:
            staged = Path(work) / "int8.onnx"
            write_onnx_file(cpu, x[:1], staged, True, meta)
            for runtime, run in _runtime_runners(staged).items():
                got = run(x.numpy())
                error = float(np.linalg.norm(got - expected) / max(np.linalg.norm(expected), 1e-12))
                if not error <= MAX_RELATIVE_ERROR:
                    raise QatError(f"{runtime} computes the exported int8 file {error:.3f} (relative) away from the "
                                   f"fake-quantized model on {len(x)} held-out images (allowed "
                                   f"{MAX_RELATIVE_ERROR}); {path} was not written")
            tmp.write_bytes(staged.read_bytes())

    return atomic_write(path, write)


def agreement_figures(path: str | Path, float_model: nn.Module, batches, *, threads: int | None = None,
                      runners: dict | None = None) -> dict:
    """Top-1 agreement of the int8 file at ``path`` with ``float_model`` (the float deploy form, in PyTorch), and the
    top-1 of both against the labels, over every image of ``batches``, in each installed runtime (``runners``: the
    file's, when the caller has them). The batches are streamed: the whole 10,000-image test split at 224 px (6 GB
    as float32) is never held at once."""
    module = float_model.eval().cpu()
    runners = runners if runners is not None else _runtime_runners(Path(path), threads)
    images, float_right, same, right = 0, 0, dict.fromkeys(runners, 0), dict.fromkeys(runners, 0)
    with torch.inference_mode():
        for x, y, _ in batches:
            if x is None:
                continue
            x, y = x.float().cpu().contiguous(), y.cpu().numpy()
            reference = torch.cat([module(x[i:i + 64]) for i in range(0, len(x), 64)]).argmax(1).numpy()
            images, float_right = images + len(x), float_right + int((reference == y).sum())
            for runtime, run in runners.items():
                top1 = np.concatenate([run(x[i:i + 16].numpy()) for i in range(0, len(x), 16)]).argmax(1)
                same[runtime] += int((top1 == reference).sum())
                right[runtime] += int((top1 == y).sum())
    figures: dict = {"images": images, "float32_top1": 100 * float_right / images}
    for runtime in runners:
        figures[runtime] = {"agreement": 100 * same[runtime] / images, "int8_top1": 100 * right[runtime] / images}
    return figures


def int8_figures(path: str | Path, float_model: nn.Module, batches, *, threads: int | None = None,
                 runs: int = 36) -> dict:
    """:func:`agreement_figures`, and the median batch-1 latency (ms) of the int8 file and of ``float_model``
    exported to float32 ONNX in each installed runtime; all four timed together in interleaved rounds, so
    ``int8_over_best_float32`` compares int8 with the faster float32 runtime under the same load."""
    from ..runtime.export import write_onnx_file
    from ..runtime.quantize import median_latencies

    int8_runners = _runtime_runners(Path(path), threads)
    figures = agreement_figures(path, float_model, batches, runners=int8_runners)
    first = next(x for x, _, _ in batches if x is not None)[:1].float().cpu().contiguous()
    module = float_model.eval().cpu()
    with tempfile.TemporaryDirectory(prefix=".qat-float-") as work:
        float_onnx = Path(work) / "float32.onnx"
        write_onnx_file(module, first, float_onnx, True, {})
        runners = {}
        for runtime, float_run in _runtime_runners(float_onnx, threads).items():
            runners[(runtime, "float32")], runners[(runtime, "int8")] = float_run, int8_runners[runtime]
        ms = median_latencies(runners, first.numpy(), runs)
    best_float = min((v for (_, kind), v in ms.items() if kind == "float32"), default=float("nan"))
    for runtime in {r for r, _ in runners}:
        float_ms, int8_ms = ms[(runtime, "float32")], ms[(runtime, "int8")]
        figures[runtime].update(float32_ms=float_ms, int8_ms=int8_ms, int8_over_float32=int8_ms / float_ms,
                                int8_over_best_float32=int8_ms / best_float)
    return figures

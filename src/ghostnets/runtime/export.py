"""Export the deploy form to ONNX or OpenVINO IR, checked against PyTorch before the file is put in place.

The exported graph is always the re-parameterized model (BatchNorm folded, RepGhost branches merged): the fastest
equivalent of what was trained. The file carries what a user needs beside the weights: the model name, the input
preprocessing (size, resize, mean/std, interpolation) and the class names (ONNX ``metadata_props``; OpenVINO
``rt_info`` under ``ghostnets``).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.transforms import InputSpec
from ..errors import GhostnetsError
from ..models.input_check import MIN_INPUT_SIZE
from ..record import in_chans_of, is_deploy, model_name, record_of
from ..transforms import is_equivalent, reparameterize
from ..transforms.shuffle_free import without_channel_shuffles
from .sessions import RuntimeUnavailableError, onnx_runner, openvino_runner, require

FORMATS = {"onnx": ".onnx", "openvino": ".xml"}


class ExportError(GhostnetsError, RuntimeError):
    """An export that could not be made, or whose file does not compute what the PyTorch model computes."""


@dataclass
class ExportReport:
    """Where the file went and how closely it matches PyTorch (max |Δ logits| and max |logits| per input set)."""

    path: Path
    format: str
    checks: dict[str, tuple[float, float]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        shown = "; ".join(f"{name}: max |Δ| {d:.3g} (max |logits| {s:.3g})" for name, (d, s) in self.checks.items())
        return f"{self.format} {self.path}: {shown}"


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _require(module: str, fmt: str):
    try:
        return require(module, f"--format {fmt}")
    except RuntimeUnavailableError as e:
        raise ExportError(str(e)) from None


def export_metadata(model: nn.Module, spec: InputSpec, class_names: list[str] | None) -> dict[str, str]:
    """String metadata stored with an exported file."""
    meta = {"ghostnets.model": model_name(model),
            "ghostnets.input": json.dumps(spec.as_dict()),
            "ghostnets.layout": "NCHW float32, normalised" + (", BGR" if spec.bgr else "")}
    if class_names:
        meta["ghostnets.class_names"] = json.dumps(list(class_names))
    return meta


def write_onnx_file(model: nn.Module, example: torch.Tensor, path: Path, dynamic_batch: bool, meta: dict) -> None:
    onnx = _require("onnx", "onnx")
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    try:
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation notices: it is the one that
            warnings.simplefilter("ignore")  # gives the plainest graph for these convolutional models
            torch.onnx.export(model, (example,), str(path), opset_version=17, input_names=["input"],
                              output_names=["logits"], dynamic_axes=axes, dynamo=False)
    except Exception as e:
        raise ExportError(f"torch.onnx.export failed: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    proto = onnx.load(str(path))
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _check(reference: nn.Module, run, inputs: dict[str, torch.Tensor], dynamic_batch: bool,
           report: ExportReport) -> None:
    for name, x in inputs.items():
        if not dynamic_batch:
            x = x[:1]
        with torch.inference_mode():
            expected = reference(x).numpy()
        got = np.concatenate([run(x[i:i + 1].numpy()) for i in range(len(x))]) if not dynamic_batch \
            else run(x.numpy())
        diff, scale = float(np.abs(got - expected).max()), float(np.abs(expected).max())
        report.checks[name] = (diff, scale)
        if not is_equivalent(diff, scale):
            raise ExportError(f"the exported {report.format} file does not match PyTorch on {name} inputs: max |Δ| "
                              f"{diff:.3g} against max |logits| {scale:.3g} (allowed: 1e-4 relative); nothing was "
                              "written")


def export_model(model: nn.Module, out: str | Path, *, format: str, spec: InputSpec | None = None,
                 class_names: list[str] | None = None, real_images: torch.Tensor | None = None,
                 input_size: tuple[int, int] | None = None, dynamic_batch: bool = False,
                 overwrite: bool = False, rewrites: bool = True) -> ExportReport:
    """Export ``model``'s deploy form to ``out`` and prove the file matches PyTorch on random and real images.

    ``spec`` / ``class_names``: what the file records of the input and the labels (default: the model's record).
    ``input_size``: the (H, W) the file takes (default ``spec.size`` square). ``real_images``: a few preprocessed
    (N, C, h, w) held-out images for the check beside random inputs (resized to ``input_size`` if need be).
    Written atomically: a failed export or check leaves nothing behind; ``overwrite=False`` refuses an existing file.
    ``rewrites``: write ShuffleNet V2 units without their channel shuffles (:mod:`ghostnets.transforms.shuffle_free`,
    exact, 0.8x the time in both runtimes); ``False``: the deploy form's graph as traced.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.suffix != FORMATS[format]:
        raise ExportError(f"--format {format} writes a {FORMATS[format]} file, got {out.name}")
    companions = [out, out.with_suffix(".bin")] if format == "openvino" else [out]
    if not overwrite and any(p.exists() for p in companions):
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    record = record_of(model)
    spec = spec or record.input
    if spec is None:
        raise ExportError(f"{model_name(model)} records no input preprocessing: pass spec=InputSpec(...)")
    class_names = class_names if class_names is not None else record.class_names
    deployed = (model if is_deploy(model) else reparameterize(model)).eval()
    in_chans = in_chans_of(deployed)
    if in_chans != spec.channels:
        raise ExportError(f"the model takes {in_chans}-channel images but the input description has {spec.channels}")
    height, width = input_size or (spec.size, spec.size)
    if min(height, width) < MIN_INPUT_SIZE:
        raise ExportError(f"input size {height}x{width} is too small: the models take {MIN_INPUT_SIZE} px and more")
    generator = torch.Generator().manual_seed(0)
    inputs = {"random": torch.randn(4, spec.channels, height, width, generator=generator)}
    if real_images is not None and len(real_images):
        real = real_images[:8].float()
        if real.shape[-2:] != (height, width):
            real = torch.nn.functional.interpolate(real, size=(height, width), mode="bilinear", align_corners=False)
        inputs["real"] = real
    report = ExportReport(out, format)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_onnx = out.with_name(f".{out.stem}.tmp-{os.getpid()}.onnx")
    tmp_xml = out.with_name(f".{out.stem}.tmp-{os.getpid()}.xml")
    temporaries = [tmp_onnx, tmp_xml, tmp_xml.with_suffix(".bin")]
    try:
        meta = export_metadata(deployed, spec, class_names)
        # the runtimes get the graph without ShuffleNet V2's shuffles (exact; the check compares it with deployed)
        graph = without_channel_shuffles(deployed) if rewrites else deployed
        write_onnx_file(graph, inputs["random"][:1], tmp_onnx, dynamic_batch, meta)
        if format == "onnx":
            _require("onnxruntime", "onnx")
            _check(deployed, onnx_runner(tmp_onnx), inputs, dynamic_batch, report)
            fsync_file(tmp_onnx)
            os.replace(tmp_onnx, out)
        else:
            ov = _require("openvino", "openvino")
            ov_model = ov.convert_model(str(tmp_onnx))
            for key, value in meta.items():
                ov_model.set_rt_info(value, ["ghostnets", key.removeprefix("ghostnets.")])
            ov.save_model(ov_model, str(tmp_xml), compress_to_fp16=False)
            _check(deployed, openvino_runner(tmp_xml), inputs, dynamic_batch, report)
            fsync_file(tmp_xml.with_suffix(".bin"))
            fsync_file(tmp_xml)
            os.replace(tmp_xml.with_suffix(".bin"), out.with_suffix(".bin"))  # weights first; the .xml names them
            os.replace(tmp_xml, out)
    finally:
        for path in temporaries:
            if path.exists():
                path.unlink()
    report.files = [p for p in companions if p.exists()]
    return report

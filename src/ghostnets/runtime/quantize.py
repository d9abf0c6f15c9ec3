"""INT8 post-training static quantization of the deploy form, measured against float32 before it is put in place.

Two backends, both starting from the verified float32 ONNX file :func:`~ghostnets.runtime.export.export_model` writes:

* ``onnxruntime``: ``onnxruntime.quantization.quantize_static`` -> a QDQ ``.onnx`` (per-channel symmetric int8
  weights; activations: see below);
* ``openvino``: NNCF ``nncf.quantize`` on the OpenVINO model -> an ``.xml``/``.bin`` IR with FakeQuantize
  operations, which the CPU plugin runs as int8.

``activations``: ``"asymmetric"`` (the default: a signed tensor in its own [lo, hi], with a zero point; NNCF's preset
MIXED, onnxruntime's uint8) or ``"symmetric"`` (in [-a, a], no zero point; NNCF's preset PERFORMANCE, onnxruntime's
int8 with ``ActivationSymmetric``). A tensor that is never negative (after a ReLU) gets [0, hi] either way.
All-int8 on models trained at 224 px (three calibration sets each, a Xeon with VNNI; BENCHMARKS.md,
``int8_calibration_vnni``), symmetric activations agreed less with float32 (OpenVINO 97.45 % vs 97.73 % on
ghostnet_100, 96.27 % vs 98.17 % on mobilenetv3_large_100; onnxruntime 97.78 % vs 98.12 %, 95.17 % vs 98.55 %) and
ran no faster in OpenVINO (0.70x vs 0.69x of float32 at batch 1, 0.50x vs 0.49x at batch 32, ghostnet_100);
onnxruntime runs them 2.6x slower than its float32 (its s8s8 path), against 0.84x for its u8s8 one.
Symmetric is for targets that require it.

``ranges``: each activation's range from the calibration values' distribution, ``"histogram"`` (the default: NNCF's
``RangeEstimatorParametersSet.HISTOGRAM``; onnxruntime's ``CalibrationMethod.Percentile``, 99.999 %: its Entropy
method left uint8 ranges at MinMax's), or from their extremes, ``"minmax"`` (NNCF's mean of the batches' minima and
maxima, onnxruntime's MinMax). All-int8, on three sets of 300 calibration images each (BENCHMARKS.md,
``int8_calibration_vnni``), histogram ranges agreed with float32 better on average in OpenVINO for ghostnet_100 and
mobilenetv3_large_100 trained at 224 px (98.08 % vs 97.73 %, 99.25 % vs 98.17 %) and in onnxruntime for ghostnet_100
(98.80 % vs 98.12 %); onnxruntime's mobilenetv3_large_100 did better on two sets of three but fell to 95.35 % on the
third (mean 98.07 % vs 98.55 %). The calibration set alone moves agreement by up to 1.9 points either way.

``auto`` builds both, measures their batch-1 latency and their top-1 agreement with float32 on held-out images, and
keeps the faster of those that agree on at least 99 %. A backend that falls short is retried accuracy-aware, keeping
as few layers in float as the bar allows, and the report and the file's metadata name them:

* OpenVINO: NNCF's ``quantize_with_accuracy_control`` with top-1 agreement with float32 as the metric (float32
  scores 1, so ``max_drop = 1 - min_agreement``): it ranks the quantizer groups by how much reverting each to float
  restores the metric and reverts the worst until the bar holds (NNCF docs, "Quantization with accuracy control");
* onnxruntime: the layers that ranking kept in float (the OpenVINO model keeps the ONNX node names) are excluded from
  quantization; without them (OpenVINO not installed), its depthwise convolutions (GhostNet's cheap operations and
  downsampling shortcuts: per-channel ranges of depthwise filters are where post-training int8 loses most).

``weight_bits``: 7 or 8 bits of the int8 range for the weights; by default (:func:`default_weight_bits`) 8 on a CPU
with int8 dot-product instructions (x86 VNNI or AMX, Arm's dot product), 7 elsewhere. With 7, both backends keep
dense weights in half the range (onnxruntime ``reduce_range``, NNCF ``OverflowFix.ENABLE`` for dense convolutions and
MatMuls). On x86 CPUs without VNNI (AVX2, e.g. an AMD EPYC), the u8 x s8 int8 kernels of both runtimes add pairs of
products in saturating int16, and full-range weights overflow them. On ghostnet_100 trained at 224 px, all-int8
post-training quantization then agreed with float32 on 87.8-87.9 % of 2,000 held-out images (top-1 75.5-76.4 % vs
82.5 %); with 7-bit weights, 97.1-97.2 % (top-1 81.8-81.9 %). On a Xeon with VNNI and AMX nothing saturates and the
lost bit costs OpenVINO agreement: 98.25 % with 8 bits, 96.60 % with 7 (BENCHMARKS.md, ``int8_weight_range_vnni``). The
NNCF docs describe the issue (``nncf.quantization.advanced_parameters.OverflowFix``). A file made with 8-bit weights
is computed wrongly on a CPU without VNNI: quantize for such a CPU with ``weight_bits=7``.

Written atomically (temporary files beside ``out``, then a rename; the ``.bin`` before the ``.xml`` that names it):
a failed quantization leaves nothing behind; ``overwrite=False`` refuses an existing file before any work.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.transforms import InputSpec
from ..measure.machine import cpu_flags
from ..record import is_deploy, record_of
from ..transforms import reparameterize
from .export import ExportError, export_metadata, export_model, fsync_file
from .sessions import on_own_thread, onnx_runner, openvino_runner
from .timing import time_interleaved

BACKENDS = {"onnxruntime": ".onnx", "openvino": ".xml"}
PACKAGES = {"onnxruntime": ("onnx", "onnxruntime"), "openvino": ("openvino", "nncf")}
MIN_AGREEMENT = 0.99
LATENCY_RUNS = 36
# x86 VNNI (AVX-512 or AVX), AMX int8, Arm's dot product: int8 multiply-adds into int32, nothing saturates
INT8_DOT_PRODUCT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})
ACTIVATIONS = ("asymmetric", "symmetric")
RANGES = ("histogram", "minmax")
# onnxruntime's calibration method for each ``ranges``
ORT_RANGES = {"minmax": "MinMax", "histogram": "Percentile"}  # Entropy left uint8 ranges at MinMax's


def default_weight_bits(flags: set[str] | None = None) -> int:
    """8 where the CPU (``flags``: this one's by default) has int8 dot-product instructions, else 7 (module notes)."""
    return 8 if (cpu_flags() if flags is None else flags) & INT8_DOT_PRODUCT_FLAGS else 7


class QuantizeError(ExportError):
    """An INT8 model that could not be made or that does not agree closely enough with float32."""


@dataclass
class BackendFigures:
    """One backend's result: ``agreement`` (fraction of held-out images whose int8 top-1 is float32's), batch-1
    latencies in ms, the layers kept in float (after a retry) and, when retried, the all-int8 agreement."""

    backend: str
    agreement: float = float("nan")
    float_ms: float = float("nan")
    int8_ms: float = float("nan")
    kept_float: list[str] = field(default_factory=list)
    all_int8_agreement: float | None = None
    error: str | None = None
    method: str = "ptq"  # "ptq": all int8; "accuracy-control" / "sensitivity" / "depthwise-float": a retry
    worse_retry: str | None = None  # a retry that agreed less than all-int8 (all-int8 was kept), described

    def summary(self) -> str:
        if self.error:
            return f"{self.backend}: failed ({self.error})"
        retried = (f" (all-int8 {self.all_int8_agreement:.1%}; {self.method}: {len(self.kept_float)} layers kept in "
                   "float)") if self.all_int8_agreement is not None else ""
        if self.worse_retry:
            retried = f" (all-int8, kept: {self.worse_retry})"
        return (f"{self.backend}: agreement {self.agreement:.2%}{retried}, float32 {self.float_ms:.2f} ms, "
                f"int8 {self.int8_ms:.2f} ms")


@dataclass
class QuantizeReport:
    """Where the int8 file went, which backend made it and why, and how it compares with float32."""

    path: Path
    backend: str
    agreement: float
    float_ms: float
    int8_ms: float
    kept_float: list[str]
    reason: str
    candidates: dict[str, BackendFigures]
    files: list[Path] = field(default_factory=list)
    held_out: int = 0
    threads: int | None = None
    method: str = "ptq"
    weight_bits: int = 7
    activations: str = "asymmetric"
    ranges: str = "histogram"

    def summary(self) -> str:
        return (f"int8 {self.backend} {self.path} ({self.weight_bits}-bit weights, {self.activations} activations, "
                f"{self.ranges} ranges): top-1 agreement with float32 "
                f"{self.agreement:.2%} on {self.held_out} held-out images; batch 1: {self.float_ms:.2f} ms float32 -> "
                f"{self.int8_ms:.2f} ms int8")


def _require(backend: str) -> None:
    missing = []
    for module in PACKAGES[backend]:
        try:
            import_nncf() if module == "nncf" else __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise QuantizeError(f"the {backend} int8 backend needs {' and '.join(repr(m) for m in missing)}: pip install "
                            f"'ghostnets[deploy]' (or pip install {' '.join(missing)})")


def _resized(images: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    images = images.float()
    if images.shape[-2:] != size:
        images = torch.nn.functional.interpolate(images, size=size, mode="bilinear", align_corners=False)
    return images.contiguous().numpy()


def _batches(x: np.ndarray, dynamic_batch: bool, size: int = 16) -> list[np.ndarray]:
    step = size if dynamic_batch else 1
    return [x[i:i + step] for i in range(0, len(x), step)]


def _top1(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, dynamic_batch: bool) -> np.ndarray:
    return np.concatenate([run(b) for b in _batches(x, dynamic_batch)]).argmax(1)


def median_latencies(runners: dict[str, Callable[[np.ndarray], object]], x: np.ndarray, runs: int) -> dict[str, float]:
    """Median batch-1 latency (ms) of each runner: the timing harness's interleaved blocks, three rounds of them, so
    load from elsewhere on the machine falls on all of them alike."""
    times = time_interleaved({name: (lambda run=run: run(x)) for name, run in runners.items()}, max(3, runs),
                             warmup=3, block=max(1, runs // 3))
    return {name: statistics.median(t) for name, t in times.items()}


def int8_metadata(meta: dict[str, str], backend: str, calib: int, kept_float: list[str],
                  method: str = "ptq", weight_bits: int = 7, activations: str = "asymmetric",
                  ranges: str = "minmax") -> dict[str, str]:
    return {**meta, "ghostnets.precision": "int8",
            "ghostnets.int8": json.dumps({"backend": backend, "method": method, "calibration_images": calib,
                                          "kept_float": kept_float, "weight_bits": weight_bits,
                                          "activations": activations, "ranges": ranges})}


# --- onnxruntime -------------------------------------------------------------------------------------------------


def _ort_depthwise(path: Path) -> list[str]:
    """Names of the depthwise Conv nodes (group == input channels) of an ONNX file."""
    import onnx

    proto = onnx.load(str(path))
    weights = {w.name: list(w.dims) for w in proto.graph.initializer}
    names = []
    for node in proto.graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        dims = weights.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if dims and group > 1 and dims[1] == 1:  # weight (out, in / group, kh, kw): in / group == 1
            names.append(node.name)
    return names


def _ort_quantize(float_onnx: Path, work: Path, calib: np.ndarray, dynamic_batch: bool, exclude: list[str],
                  weight_bits: int, activations: str = "asymmetric", ranges: str = "minmax") -> Path:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = work / "ort-prepared.onnx"
    if not prepared.exists():  # shape inference and graph clean-up (shared initializers, Identity nodes)
        quant_pre_process(str(float_onnx), str(prepared), skip_symbolic_shape=True)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            # onnxruntime's histogram collectors stack each tensor over the batches: they must be of one size
            self.batches = iter(_batches(calib, dynamic_batch and ranges == "minmax"))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch}

    out = work / f"ort-int8-{activations}-{ranges}{'-dwfloat' if exclude else ''}.onnx"
    symmetric = activations == "symmetric"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_static's advice goes to the root logger
    try:
        quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=weight_bits == 7, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                        extra_options={"ActivationSymmetric": symmetric}, nodes_to_exclude=exclude or None,
                        calibrate_method=CalibrationMethod[ORT_RANGES[ranges]])
    finally:
        root.setLevel(level)
    return out


def _ort_write_metadata(path: Path, meta: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


# --- OpenVINO + NNCF ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_nncf():
    """NNCF at INFO prints its progress bars to stdout, and its lazy import of torch's C++ extension tools logs that
    there is no CUDA: neither is news to the user of a CPU export."""
    def drop(record: logging.LogRecord) -> bool:
        return False

    cpp = logging.getLogger("torch.utils.cpp_extension")
    cpp.addFilter(drop)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        cpp.removeFilter(drop)


def import_nncf():
    with quiet_nncf():
        import nncf
    return nncf


def _advanced(weight_bits: int, ranges: str = "minmax"):
    """NNCF's advanced parameters. Weights: 7 bits, ``OverflowFix.ENABLE``, dense conv and MatMul weights in half of
    the int8 range (see the module notes: int8 kernels without VNNI saturate on full-range weights); 8:
    ``OverflowFix.DISABLE``, the full range. Activation ranges: ``minmax`` NNCF's default, ``histogram`` its
    ``RangeEstimatorParametersSet.HISTOGRAM``."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    extra = {"activations_range_estimator_params": RangeEstimatorParametersSet.HISTOGRAM} if ranges == "histogram" \
        else {}
    return AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE if weight_bits == 7 else OverflowFix.DISABLE,
                                          **extra)


def _preset(activations: str):
    """NNCF's preset: PERFORMANCE (symmetric weights and activations) or MIXED (asymmetric activations)."""
    nncf = import_nncf()
    return nncf.QuantizationPreset.PERFORMANCE if activations == "symmetric" else nncf.QuantizationPreset.MIXED


def _ov_quantize(float_onnx: Path, calib: np.ndarray, dynamic_batch: bool, ignore: list[str], weight_bits: int,
                 activations: str = "asymmetric", ranges: str = "minmax"):
    import openvino as ov

    nncf = import_nncf()
    from nncf.common.logging.logger import nncf_logger

    model = ov.convert_model(str(float_onnx))
    batches = _batches(calib, dynamic_batch)
    scope = nncf.IgnoredScope(names=ignore) if ignore else None
    previous = nncf_logger.level
    nncf.set_log_level(logging.ERROR)
    try:
        with quiet_nncf():
            return nncf.quantize(model, nncf.Dataset(batches), preset=_preset(activations),
                                 subset_size=len(batches), ignored_scope=scope,
                                 advanced_parameters=_advanced(weight_bits, ranges))
    finally:
        nncf.set_log_level(previous)


def _ov_float_layers(model) -> list[str]:
    """Convolutions and MatMuls of an NNCF-quantized OpenVINO model whose input is not a FakeQuantize output: the
    layers left in float (friendly names, the ONNX node names, without OpenVINO's ``/WithoutBiases`` suffix)."""
    kinds = ("Convolution", "GroupConvolution", "MatMul")
    kept = []
    for op in model.get_ordered_ops():
        if op.get_type_name() in kinds and op.input_value(0).get_node().get_type_name() != "FakeQuantize":
            kept.append(op.get_friendly_name().removesuffix("/WithoutBiases"))
    return kept


def _ov_accuracy_control(float_onnx: Path, calib: np.ndarray, held: np.ndarray, reference: np.ndarray,
                         dynamic_batch: bool, min_agreement: float, weight_bits: int,
                         activations: str = "asymmetric", ranges: str = "minmax"):
    """NNCF ``quantize_with_accuracy_control``: top-1 agreement with float32's ``reference`` on ``held`` is the
    metric (float32 scores 1.0), ``max_drop = 1 - min_agreement`` absolute; returns the model and its float layers."""
    import openvino as ov

    nncf = import_nncf()
    from nncf.common.logging.logger import nncf_logger

    model = ov.convert_model(str(float_onnx))
    step = 16 if dynamic_batch else 1
    items = [(held[i:i + step], reference[i:i + step]) for i in range(0, len(held), step)]

    def agreement(compiled, data) -> tuple[float, list[float]]:
        output = compiled.output(0)
        hits = []
        for x, ref in data:
            hits += (compiled(x)[output].argmax(1) == ref).astype(float).tolist()
        return float(np.mean(hits)), hits

    previous = nncf_logger.level
    nncf.set_log_level(logging.ERROR)
    try:
        with quiet_nncf():
            quantized = nncf.quantize_with_accuracy_control(
                model, nncf.Dataset(_batches(calib, dynamic_batch)), nncf.Dataset(items, lambda item: item[0]),
                agreement, max_drop=max(0.0, 1.0 - min_agreement), drop_type=nncf.DropType.ABSOLUTE,
                preset=_preset(activations), subset_size=len(calib) // step or 1,
                advanced_quantization_parameters=_advanced(weight_bits, ranges))
    finally:
        nncf.set_log_level(previous)
    return quantized, _ov_float_layers(quantized)


# --- the candidates ----------------------------------------------------------------------------------------------


@dataclass
class _Candidate:
    figures: BackendFigures
    files: list[Path]  # the int8 file(s) in the work folder, the main one first
    float_run: Callable
    int8_run: Callable


def _build(backend: str, float_onnx: Path, work: Path, calib: np.ndarray, held: np.ndarray, reference: np.ndarray,
           dynamic_batch: bool, threads: int | None, meta: dict[str, str], min_agreement: float, weight_bits: int,
           activations: str, ranges: str, sensitive: list[str] | None = None) -> _Candidate:
    """One backend's int8 file: all-int8 first; below ``min_agreement`` (when it is above 0) retried accuracy-aware
    (OpenVINO: NNCF's accuracy control; onnxruntime: ``sensitive``, the layers that kept OpenVINO's model at the bar,
    or else its depthwise convolutions, excluded from quantization)."""
    figures = BackendFigures(backend)

    def agreement(run) -> float:
        return float((_top1(run, held, dynamic_batch) == reference).mean())

    def better(first: tuple, second: tuple, method: str, kept: list[str]) -> tuple:
        """The retry (``second``: its files or path, its runner) unless it agrees less than all-int8 (``first``)."""
        retry_agreement = agreement(second[1])
        if retry_agreement < figures.agreement:
            figures.worse_retry = (f"{method} with {len(kept)} layers in float agreed on only "
                                   f"{retry_agreement:.1%}")
            return first
        figures.all_int8_agreement, figures.method, figures.kept_float = figures.agreement, method, kept
        figures.agreement = retry_agreement
        return second

    if backend == "onnxruntime":
        def attempt(exclude: list[str], method: str) -> tuple[Path, Callable]:
            path = _ort_quantize(float_onnx, work, calib, dynamic_batch, exclude, weight_bits, activations, ranges)
            _ort_write_metadata(path, int8_metadata(meta, backend, len(calib), exclude, method, weight_bits,
                                                    activations, ranges))
            return path, onnx_runner(path, threads, stop_spinning=True)

        path, run = attempt([], "ptq")
        figures.agreement = agreement(run)
        if min_agreement > 0 and figures.agreement < min_agreement:
            nodes = set(_ort_nodes(work / "ort-prepared.onnx"))
            exclude, method = ([n for n in sensitive if n in nodes], "sensitivity") if sensitive else ([], "")
            if not exclude:
                exclude, method = _ort_depthwise(work / "ort-prepared.onnx"), "depthwise-float"
            if exclude:
                path, run = better((path, run), attempt(exclude, method), method, exclude)
        return _Candidate(figures, [path], onnx_runner(float_onnx, threads, stop_spinning=True), run)

    import openvino as ov

    def save(model, kept: list[str], method: str, tag: str) -> tuple[list[Path], Callable]:
        for key, value in int8_metadata(meta, backend, len(calib), kept, method, weight_bits, activations,
                                        ranges).items():
            model.set_rt_info(value, ["ghostnets", key.removeprefix("ghostnets.")])
        xml = work / f"ov-int8{tag}.xml"
        ov.save_model(model, str(xml), compress_to_fp16=False)
        return [xml, xml.with_suffix(".bin")], openvino_runner(xml, threads=threads)

    # NNCF compiles with Cores of its own: on a thread of their own (sessions.on_own_thread)
    files, run = save(on_own_thread(_ov_quantize, float_onnx, calib, dynamic_batch, [], weight_bits, activations,
                                    ranges), [], "ptq", "")
    figures.agreement = agreement(run)
    if min_agreement > 0 and figures.agreement < min_agreement:
        model, kept = on_own_thread(_ov_accuracy_control, float_onnx, calib, held, reference, dynamic_batch,
                                    min_agreement, weight_bits, activations, ranges)
        files, run = better((files, run), save(model, kept, "accuracy-control", "-ac"), "accuracy-control", kept)
    return _Candidate(figures, files, openvino_runner(ov.convert_model(str(float_onnx)), threads=threads), run)


def _ort_nodes(path: Path) -> list[str]:
    import onnx

    return [node.name for node in onnx.load(str(path)).graph.node]


def _choose(candidates: dict[str, _Candidate], asked: str, min_agreement: float, held: int,
            threads: int | None) -> tuple[str, str]:
    passing = {b: c.figures for b, c in candidates.items() if c.figures.error is None
               and c.figures.agreement >= min_agreement}
    on = f"batch 1, {threads} thread{'s' if threads != 1 else ''}" if threads else "batch 1"
    if not passing:
        shown = "; ".join(c.figures.summary() for c in candidates.values())
        raise QuantizeError(f"no int8 model agrees with float32 on {min_agreement:.1%} of the {held} held-out images "
                            f"({shown}); nothing was written (min_agreement, --min-agreement: the bar to accept)")
    best = min(passing, key=lambda b: passing[b].int8_ms)
    mine = passing[best]
    kept = f" with {len(mine.kept_float)} layers kept in float ({mine.method})" if mine.kept_float else ""
    if asked != "auto":
        return best, (f"{best} as asked: it agrees with float32 on {mine.agreement:.1%} of {held} held-out images"
                      f"{kept} and runs in {mine.int8_ms:.2f} ms ({on}) against {mine.float_ms:.2f} ms in float32")
    others = [f for b, f in ((b, c.figures) for b, c in candidates.items()) if b != best]
    if not others:
        return best, f"{best} is the only backend tried"
    other = others[0]
    if other.error:
        why = f"{other.backend} could not be built ({other.error})"
    elif other.backend not in passing:
        why = (f"{other.backend} agrees with float32 on only {other.agreement:.1%} of the held-out images "
               f"(needed {min_agreement:.1%})")
    else:
        why = f"{best} runs in {mine.int8_ms:.2f} ms against {other.backend}'s {other.int8_ms:.2f} ms ({on})"
    return best, (f"{best} was kept because {why}; it agrees with float32 on {mine.agreement:.1%} of {held} "
                  f"held-out images{kept}")


def quantize_model(model: nn.Module, out: str | Path, *, spec: InputSpec | None = None,
                   class_names: list[str] | None = None, calib: torch.Tensor, held_out: torch.Tensor,
                   backend: str = "auto", overwrite: bool = False,
                   input_size: tuple[int, int] | None = None, dynamic_batch: bool = False, threads: int | None = None,
                   min_agreement: float = MIN_AGREEMENT, runs: int = LATENCY_RUNS,
                   weight_bits: int | None = None, activations: str = "asymmetric",
                   ranges: str = "histogram") -> QuantizeReport:
    """Quantize ``model``'s deploy form to INT8 with real ``calib`` images and write it to ``out``.

    ``backend``: ``"onnxruntime"`` (``out`` must end in ``.onnx``), ``"openvino"`` (``.xml``, with its ``.bin``) or
    ``"auto"``: both are built and measured and the faster of those agreeing with float32 on ``min_agreement`` of
    ``held_out`` is written, at ``out`` with the winner's suffix (``out`` may end in ``.onnx``, ``.xml`` or
    nothing). ``calib``/``held_out``: preprocessed (N, C, h, w) images (resized to ``input_size`` if need be), see
    :func:`calibration_images` and :func:`held_out_images`. Latency: median of ``runs`` batch-1 runs on ``threads``
    threads (``None``: the runtime's default). The file carries :func:`export_metadata` plus ``ghostnets.precision =
    int8``. ``weight_bits``: 7 or 8 (``None``: :func:`default_weight_bits`, by this CPU; see the module notes).
    ``activations``: ``"asymmetric"`` or ``"symmetric"``; ``ranges``: ``"histogram"`` or ``"minmax"`` (module notes),
    for every backend tried.
    Raises :class:`QuantizeError` (nothing written) when no backend reaches ``min_agreement``, even with its
    depthwise convolutions kept in float.
    """
    if backend not in (*BACKENDS, "auto"):
        raise QuantizeError(f"unknown int8 backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    out = Path(out)
    if backend != "auto" and out.suffix != BACKENDS[backend]:
        raise QuantizeError(f"the {backend} int8 backend writes a {BACKENDS[backend]} file, got {out.name}")
    if backend == "auto" and out.suffix not in ("", *BACKENDS.values()):
        raise QuantizeError(f"--int8-backend auto writes a .onnx or an .xml file (whichever backend wins), got "
                            f"{out.name}")
    tried = ["openvino", "onnxruntime"] if backend == "auto" else [backend]  # OpenVINO's ranking informs ORT
    targets = {b: [out.with_suffix(BACKENDS[b])] + ([out.with_suffix(".bin")] if b == "openvino" else [])
               for b in tried}
    existing = [p for paths in targets.values() for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists; pass --force to replace it")
    weight_bits = default_weight_bits() if weight_bits is None else weight_bits
    if weight_bits not in (7, 8):
        raise QuantizeError(f"weight_bits is 7 (half-range weights, for CPUs without VNNI) or 8, got {weight_bits!r}")
    if activations not in ACTIVATIONS:
        raise QuantizeError(f"activations is asymmetric or symmetric, got {activations!r}")
    if ranges not in RANGES:
        raise QuantizeError(f"ranges is histogram or minmax, got {ranges!r}")
    if not 0 <= min_agreement <= 1:
        raise QuantizeError(f"min_agreement is a fraction between 0 and 1, got {min_agreement}")
    if calib is None or not len(calib) or held_out is None or not len(held_out):
        raise QuantizeError("int8 quantization needs real images: calibration images and held-out images")
    if backend != "auto":
        _require(backend)
    else:
        _require("onnxruntime")  # the float32 reference file is ONNX either way
    record = record_of(model)
    spec = spec or record.input
    if spec is None:
        raise QuantizeError("the model records no input preprocessing: pass spec=InputSpec(...)")
    class_names = class_names if class_names is not None else record.class_names
    deployed = (model if is_deploy(model) else reparameterize(model)).eval()
    height, width = input_size or (spec.size, spec.size)
    calib_x, held_x = _resized(calib, (height, width)), _resized(held_out, (height, width))
    with torch.inference_mode():
        reference = torch.cat([deployed(torch.from_numpy(b)) for b in _batches(held_x, True, 32)]).argmax(1).numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.stem}.int8-tmp-", dir=out.parent))
    try:
        float_onnx = work / "float32.onnx"
        export_model(deployed, float_onnx, format="onnx", spec=spec, class_names=class_names,
                     real_images=held_out[:8], input_size=(height, width), dynamic_batch=dynamic_batch)
        meta = export_metadata(deployed, spec, class_names)
        candidates: dict[str, _Candidate] = {}
        for name in tried:
            try:
                if backend == "auto":
                    _require(name)
                ov = candidates.get("openvino")
                sensitive = ov.figures.kept_float if ov is not None and ov.figures.method == "accuracy-control" \
                    else None
                candidates[name] = _build(name, float_onnx, work, calib_x, held_x, reference, dynamic_batch, threads,
                                          meta, min_agreement, weight_bits, activations, ranges, sensitive)
            except Exception as e:
                if backend != "auto":
                    if isinstance(e, ExportError):
                        raise
                    raise QuantizeError(f"{name} int8 quantization failed: {type(e).__name__}: "
                                        f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
                failed = BackendFigures(name, error=f"{type(e).__name__}: {str(e).strip()[:200]}")
                candidates[name] = _Candidate(failed, [], None, None)
        runners = {}
        for name, c in candidates.items():
            if c.figures.error is None:
                runners[(name, "float")], runners[(name, "int8")] = c.float_run, c.int8_run
        timings = median_latencies(runners, held_x[:1], runs) if runners else {}
        for (name, kind), ms in timings.items():
            setattr(candidates[name].figures, f"{kind}_ms", ms)
        winner, reason = _choose(candidates, backend, min_agreement, len(held_x), threads)
        chosen = candidates[winner]
        final = targets[winner]
        for path in reversed(chosen.files):  # the .bin before the .xml that names it
            fsync_file(path)
        for tmp, target in zip(reversed(chosen.files), reversed(final)):
            os.replace(tmp, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = chosen.figures
    return QuantizeReport(final[0], winner, figures.agreement, figures.float_ms, figures.int8_ms,
                          list(figures.kept_float), reason, {b: c.figures for b, c in candidates.items()},
                          files=[p for p in final if p.exists()], held_out=len(held_x), threads=threads,
                          method=figures.method, weight_bits=weight_bits, activations=activations, ranges=ranges)

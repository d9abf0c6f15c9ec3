"""Latency harness: a registry of inference runtimes, robust timing, peak memory, and the torchvision baselines.

Each runtime turns a deploy-form model into a callable on a float32 NCHW numpy batch that returns the logits as numpy:

- ``eager``: the PyTorch module under ``torch.inference_mode``;
- ``compile``: ``torch.compile`` of it (default mode, static shapes; it compiles on the first call);
- ``onnxruntime``: the verified ONNX export, ``InferenceSession`` with ``intra_op_num_threads``, sequential execution
  and every graph optimisation;
- ``openvino``: the verified OpenVINO IR, compiled for a static batch with ``INFERENCE_NUM_THREADS``, the ``LATENCY``
  hint and f32 precision;
- ``int8``: ``ghostnets.deploy.quantize.quantize_model`` (backend ``auto``), run on the runtime it chose.

A runtime works in two steps: ``prepare`` (one-off work per model and input size: export, quantize) and ``load`` (per
batch size: session, compiled model). Timing follows REFERENCE.md section 9: warm-up, then the runtimes take turns
in blocks of timed calls (so drift of a shared machine hits all alike), median and p90.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib.util
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import GhostnetsError

Batch = np.ndarray
RunFn = Callable[[Batch], np.ndarray]
DEPLOY_EXTRA = "pip install 'ghostnets[deploy]'"


class RuntimeUnavailableError(GhostnetsError, ValueError):
    """An unknown runtime name, or one whose package is not installed."""


@dataclass
class RuntimeContext:
    """What ``prepare`` may need beside the model: a scratch folder, the input description, quantization data."""

    workdir: Path
    spec: object | None = None  # ghostnets.data.transforms.InputSpec; None for plain modules
    class_names: list[str] | None = None
    calib: torch.Tensor | None = None  # preprocessed calibration images (int8)
    held_out: torch.Tensor | None = None  # preprocessed held-out images for int8's agreement check
    threads: int | None = None  # of the runtimes prepare measures (int8 picks its backend by latency)
    notes: dict[str, str] = field(default_factory=dict)  # what prepare chose (e.g. int8's backend), per model name


@dataclass(frozen=True)
class Runtime:
    name: str
    description: str
    packages: tuple[str, ...]  # import names that must be installed
    prepare: Callable[[nn.Module, tuple[int, int], RuntimeContext], object]
    load: Callable[[object, tuple[int, int, int, int], int], RunFn]


# ------------------------------------------------------------------------------------------------ torch runtimes


def _torch_fn(module: Callable) -> RunFn:
    def run(x: Batch) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return run


def _load_eager(model: nn.Module, shape, threads: int) -> RunFn:
    torch.set_num_threads(threads)
    return _torch_fn(model.eval())


def _load_compile(model: nn.Module, shape, threads: int) -> RunFn:
    torch.set_num_threads(threads)  # inductor's kernels take the thread count in force when they compile
    return _torch_fn(torch.compile(model.eval(), dynamic=False))


# ------------------------------------------------------------------------------------------- exported runtimes


def _check_file(model: nn.Module, run: RunFn, x: torch.Tensor, what: str) -> None:
    from ..deploy.verify import is_equivalent

    with torch.inference_mode():
        expected = model(x).numpy()
    got = run(x.numpy())
    diff, scale = float(np.abs(got - expected).max()), float(np.abs(expected).max())
    if not is_equivalent(diff, scale):
        raise RuntimeError(f"the {what} export does not match PyTorch: max |Δ| {diff:.3g}, max |logits| {scale:.3g}")


def _example(model: nn.Module, input_size: tuple[int, int]) -> torch.Tensor:
    return torch.randn(2, getattr(model, "in_chans", 3), *input_size, generator=torch.Generator().manual_seed(0))


def _plain_onnx(model: nn.Module, path: Path, input_size: tuple[int, int]) -> None:
    """Export a plain (non-ghostnets) module to ONNX with a dynamic batch, checked against PyTorch."""
    x = _example(model, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x[:1],), str(path), opset_version=17, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          dynamo=False)
    try:
        _check_file(model, _load_onnx(path, tuple(x.shape), 1), x, "ONNX")
    except Exception:
        path.unlink()  # not left for a later prepare to take as checked
        raise


def _export(model: nn.Module, input_size: tuple[int, int], ctx: RuntimeContext, fmt: str) -> Path:
    """The verified ``.onnx`` / ``.xml`` of ``model`` in ``ctx.workdir`` (dynamic batch), made once per model."""
    name = getattr(model, "bench_name", None) or getattr(model, "model_name", None) or type(model).__name__
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) + f"_{input_size[0]}x{input_size[1]}"
    path = ctx.workdir / f"{stem}{'.onnx' if fmt == 'onnx' else '.xml'}"
    if path.exists():
        return path
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    if getattr(model, "deploy", False) and ctx.spec is not None:  # a ghostnets model: the project's exporter
        from ..deploy.export import export_model

        export_model(model, path, format=fmt, spec=ctx.spec, class_names=ctx.class_names, input_size=input_size,
                     dynamic_batch=True)
        return path
    onnx_path = path.with_suffix(".onnx")
    if not onnx_path.exists():
        _plain_onnx(model, onnx_path, input_size)
    if fmt == "openvino":
        import openvino as ov

        ov.save_model(ov.convert_model(str(onnx_path)), str(path), compress_to_fp16=False)
        x = _example(model, input_size)
        try:
            _check_file(model, _load_openvino(path, tuple(x.shape), 1), x, "OpenVINO")
        except Exception:
            path.unlink()
            path.with_suffix(".bin").unlink(missing_ok=True)
            raise
    return path


def onnx_session(path: Path, threads: int):
    """An onnxruntime CPU session: ``threads`` intra-op threads, sequential execution, all graph optimisations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _load_onnx(path: Path, shape, threads: int) -> RunFn:
    session = onnx_session(path, threads)
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name
    fixed = session.get_inputs()[0].shape[0]
    if isinstance(fixed, int) and fixed != shape[0]:
        raise RuntimeError(f"{path.name} takes batches of {fixed} only, not {shape[0]}")
    return lambda x: session.run([output_name], {input_name: x})[0]


def openvino_model(path: Path, shape: tuple[int, int, int, int], threads: int):
    """An OpenVINO CPU model compiled for the static ``shape``: ``threads`` threads, LATENCY hint, f32."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({model.input(0).get_any_name(): ov.PartialShape(list(shape))})
    return core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                             "INFERENCE_PRECISION_HINT": "f32"})


def _load_openvino(path: Path, shape, threads: int) -> RunFn:
    compiled = openvino_model(path, shape, threads)
    request, output = compiled.create_infer_request(), compiled.output(0)
    return lambda x: request.infer([x], share_inputs=True)[output]


def _prepare_int8(model: nn.Module, input_size: tuple[int, int], ctx: RuntimeContext) -> Path:
    """The int8 file ``quantize_model`` (backend auto: the faster of onnxruntime and OpenVINO) writes.

    No agreement threshold: the bench times random-weight models too, whose int8 top-1 need not match float32's; the
    agreement found goes to ``ctx.notes``.
    """
    from ..deploy.quantize import quantize_model  # lazy: the quantizer is an optional part of ghostnets

    if ctx.spec is None or ctx.calib is None:
        raise RuntimeError("int8 needs the model's input description and calibration images")
    name = getattr(model, "bench_name", None) or getattr(model, "model_name", "model")
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) + f"_{input_size[0]}x{input_size[1]}"
    report = quantize_model(model, ctx.workdir / f"{stem}_int8", spec=ctx.spec, class_names=ctx.class_names,
                            calib=ctx.calib, held_out=ctx.held_out if ctx.held_out is not None else ctx.calib,
                            backend="auto", overwrite=True, input_size=input_size, dynamic_batch=True,
                            threads=ctx.threads, min_agreement=0.0)
    ctx.notes[name] = f"int8 via {report.backend}, top-1 agreement with float32 {report.agreement:.1%}"
    return Path(report.path)


def _load_int8(path: Path, shape, threads: int) -> RunFn:
    return (_load_openvino if path.suffix == ".xml" else _load_onnx)(path, shape, threads)


RUNTIMES: dict[str, Runtime] = {r.name: r for r in (
    Runtime("eager", "PyTorch eager, deploy form, torch.inference_mode", ("torch",),
            lambda m, size, ctx: m, _load_eager),
    Runtime("compile", "torch.compile of the deploy form (default mode)", ("torch",),
            lambda m, size, ctx: m, _load_compile),
    Runtime("onnxruntime", "onnxruntime CPU, sequential, all graph optimisations", ("onnx", "onnxruntime"),
            lambda m, size, ctx: _export(m, size, ctx, "onnx"), _load_onnx),
    Runtime("openvino", "OpenVINO CPU, LATENCY hint, f32", ("onnx", "openvino"),
            lambda m, size, ctx: _export(m, size, ctx, "openvino"), _load_openvino),
    Runtime("int8", "INT8 quantized (quantize_model, backend auto)", ("onnx", "onnxruntime"),
            _prepare_int8, _load_int8),
)}


def check_runtimes(names: list[str]) -> list[Runtime]:
    """The runtimes named, or an error that lists the valid names / names the extra a missing package comes with."""
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown:
        raise RuntimeUnavailableError(f"unknown runtime {', '.join(map(repr, unknown))}; choose from "
                                      f"{', '.join(RUNTIMES)}")
    for name in names:
        missing = [p for p in RUNTIMES[name].packages if importlib.util.find_spec(p) is None]
        if missing:
            raise RuntimeUnavailableError(f"runtime {name} needs the package(s) {', '.join(missing)}: "
                                          f"{DEPLOY_EXTRA}")
        if name == "int8" and importlib.util.find_spec("ghostnets.deploy.quantize") is None:
            raise RuntimeUnavailableError("runtime int8 needs ghostnets.deploy.quantize, which this ghostnets "
                                          "version does not have")
    return [RUNTIMES[n] for n in names]


def build_runtime(name: str, model: nn.Module, input_shape: tuple[int, int, int, int], *, threads: int,
                  context: RuntimeContext | None = None) -> RunFn:
    """``model`` (deploy form) as a callable of runtime ``name`` on (N, C, H, W) float32 numpy batches of
    ``input_shape``. ``context.workdir`` holds exported files (a temporary folder by default, kept while needed)."""
    runtime = check_runtimes([name])[0]
    if context is None:
        import tempfile

        context = RuntimeContext(Path(tempfile.mkdtemp(prefix="ghostnets-bench-")))
    artifact = runtime.prepare(model, tuple(input_shape[-2:]), context)
    return runtime.load(artifact, tuple(input_shape), threads)


# ---------------------------------------------------------------------------------------------------- timing


def _as_batch(batch: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(batch, torch.Tensor):
        batch = batch.detach().cpu().numpy()
    return np.ascontiguousarray(batch, dtype=np.float32)


def time_interleaved(fns: Mapping[str, RunFn], batch: np.ndarray | torch.Tensor, runs: int, warmup: int = 0, *,
                     block: int = 10, pause_s: float = 0.02) -> dict[str, list[float]]:
    """Milliseconds of ``runs`` calls of each callable, after ``warmup`` untimed calls of each.

    The runtimes take turns in blocks of ``block`` timed calls, so drift of a shared machine hits all alike. Not call
    by call: each runtime's thread pool (OpenMP, onnxruntime, TBB) spins for a while after a call, and on a machine
    with few cores that steals the next runtime's CPU (3x slower, measured on 2 cores). Before each block: a pause of
    ``pause_s`` (the other pools stop spinning) and one untimed call.
    """
    x = _as_batch(batch)
    for fn in fns.values():
        for _ in range(warmup):
            fn(x)
    times: dict[str, list[float]] = {k: [] for k in fns}
    done = 0
    while done < runs:
        n = min(block, runs - done)
        for key, fn in fns.items():
            if len(fns) > 1:
                time.sleep(pause_s)
                fn(x)
            for _ in range(n):
                start = time.perf_counter()
                fn(x)
                times[key].append((time.perf_counter() - start) * 1e3)
        done += n
    return times


def summarize(times_ms: list[float], batch_size: int) -> dict[str, float]:
    """``median_ms``, ``p90_ms`` and ``images_per_s`` (batch size / median) of a list of timings."""
    median = statistics.median(times_ms)
    p90 = statistics.quantiles(times_ms, n=10, method="inclusive")[-1] if len(times_ms) > 1 else times_ms[0]
    return {"median_ms": median, "p90_ms": p90, "images_per_s": batch_size / (median / 1e3)}


def measure(fn: RunFn, batch: np.ndarray | torch.Tensor, warmup: int = 10, runs: int = 50) -> dict[str, float]:
    """Warm ``fn`` up, time it ``runs`` times on ``batch``: ``{median_ms, p90_ms, images_per_s}``."""
    if runs < 1:
        raise ValueError("runs must be >= 1")
    return summarize(time_interleaved({"fn": fn}, batch, runs, warmup)["fn"], len(batch))


# ---------------------------------------------------------------------------------------------------- memory


def _status_kb(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM) to the current RSS (Linux >= 4.0: ``clear_refs`` 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _trim_heap() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc), so new allocations show as a rise of RSS."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL(None).malloc_trim(0)


class PeakMemory:
    """MB the process's resident memory rose by inside the ``with`` block.

    VmHWM is process-wide and only grows, so it is reset on entry (``/proc/self/clear_refs``) after garbage is
    collected and the heap trimmed; then ``mb`` = peak RSS in the block - RSS on entry and ``kind`` = ``"peak"``.
    Where the reset is refused, ``mb`` is RSS on exit - RSS on entry (``kind`` = ``"rss increase"``: an allocation
    freed before exit is missed). Memory that earlier work freed but an allocator kept (onnxruntime's and OpenVINO's
    arenas, glibc's untrimmed arenas) may be reused and not show.
    """

    def __enter__(self) -> PeakMemory:
        _trim_heap()
        self.kind = "peak" if _reset_peak() else "rss increase"
        self._start = _status_kb("VmRSS")
        self.mb: float | None = None
        return self

    def __exit__(self, *exc) -> None:
        end = _status_kb("VmHWM" if self.kind == "peak" else "VmRSS")
        if self._start is not None and end is not None:
            self.mb = max(0, end - self._start) / 1024


# ------------------------------------------------------------------------------------------------- baselines

# ImageNet-1k acc@1 of torchvision's IMAGENET1K_V1 weights (torchvision.models.*_Weights.IMAGENET1K_V1.meta)
BASELINES: dict[str, float] = {
    "mobilenet_v2": 71.878, "mobilenet_v3_large": 74.042, "mobilenet_v3_small": 67.668,
    "shufflenet_v2_x0_5": 60.552, "shufflenet_v2_x1_0": 69.362, "shufflenet_v2_x1_5": 72.996,
    "shufflenet_v2_x2_0": 76.230,
}
BASELINE_PREFIX = "tv:"


def build_baseline(name: str, num_classes: int = 1000) -> nn.Module:
    """A torchvision baseline (``mobilenet_v2`` or ``tv:mobilenet_v2``) with random weights, in eval mode."""
    import torchvision

    bare = name.removeprefix(BASELINE_PREFIX)
    if bare not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINE_PREFIX + n for n in BASELINES)}")
    model = getattr(torchvision.models, bare)(weights=None, num_classes=num_classes).eval()
    model.bench_name = BASELINE_PREFIX + bare
    return model


def deploy_form(model: nn.Module) -> nn.Module:
    """The fastest equivalent of ``model`` for inference, in eval mode.

    ghostnets models: :func:`ghostnets.reparameterize`. Plain modules (the baselines): BatchNorm folded into the
    convolutions with ``torch.fx`` and weights stored channels_last, as ghostnets models run; unchanged if FX
    cannot trace them.
    """
    if getattr(model, "deploy", None) is not None and callable(getattr(model, "fuse", None)):
        if model.deploy:
            return model.eval()
        from ..deploy.reparameterize import reparameterize

        return reparameterize(model)
    from torch.fx.experimental.optimization import fuse

    name = getattr(model, "bench_name", None)
    try:
        fused = fuse(model.eval())
    except Exception as e:  # FX cannot trace every module
        warnings.warn(f"{name or type(model).__name__}: BatchNorm not folded ({type(e).__name__}: {e})", stacklevel=2)
        fused = model.eval()
    fused = fused.to(memory_format=torch.channels_last)
    if name:
        fused.bench_name = name
    return fused

"""The inference runtimes ``ghostnets bench`` and INT8 compare: one registry, each runtime in two steps.

Each runtime turns a deploy-form model into a callable on a float32 NCHW numpy batch that returns the logits as numpy:

- ``eager``: the PyTorch module under ``torch.inference_mode``;
- ``compile``: ``torch.compile`` of it (default mode, static shapes; it compiles on the first call);
- ``onnxruntime``: the verified ONNX export, ``InferenceSession`` with ``intra_op_num_threads``, sequential execution
  and every graph optimisation;
- ``openvino``: the verified OpenVINO IR, compiled for a static batch with ``INFERENCE_NUM_THREADS``, the ``LATENCY``
  hint and f32 precision;
- ``int8``: ``ghostnets.runtime.quantize.quantize_model`` (backend ``auto``), run on the runtime it chose.

A runtime works in two steps: ``prepare`` (one-off work per model and input size: export, quantize) and ``load`` (per
batch size: session, compiled model); sessions come from :mod:`.sessions`, timing from :mod:`.timing`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.transforms import InputSpec
from ..record import in_chans_of, is_deploy, model_name, record_of
from ..transforms import reparameterize
from .sessions import DEPLOY_EXTRA, RuntimeUnavailableError, onnx_runner, openvino_runner

Batch = np.ndarray
RunFn = Callable[[Batch], np.ndarray]


@dataclass
class RuntimeContext:
    """What ``prepare`` may need beside the model: a scratch folder, the input description, quantization data."""

    workdir: Path
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


def _file_stem(model: nn.Module, input_size: tuple[int, int]) -> str:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name(model))
    return f"{name}_{input_size[0]}x{input_size[1]}"


def _spec(model: nn.Module) -> InputSpec:
    """The preprocessing the model records (a module ghostnets did not build: ImageNet's), for the file's metadata."""
    return record_of(model).input or InputSpec().with_channels(in_chans_of(model))


def _export(model: nn.Module, input_size: tuple[int, int], ctx: RuntimeContext, fmt: str) -> Path:
    """The verified ``.onnx`` / ``.xml`` of ``model`` in ``ctx.workdir`` (dynamic batch), made once per model."""
    from .export import export_model

    path = ctx.workdir / f"{_file_stem(model, input_size)}{'.onnx' if fmt == 'onnx' else '.xml'}"
    if not path.exists():
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        export_model(model, path, format=fmt, spec=_spec(model), input_size=input_size,
                     dynamic_batch=True)
    return path


def _load_onnx(path: Path, shape, threads: int) -> RunFn:
    return onnx_runner(path, threads, batch=shape[0])


def _load_openvino(path: Path, shape, threads: int) -> RunFn:
    return openvino_runner(path, shape=tuple(shape), threads=threads)


def _prepare_int8(model: nn.Module, input_size: tuple[int, int], ctx: RuntimeContext) -> Path:
    """The int8 file ``quantize_model`` (backend auto: the faster of onnxruntime and OpenVINO) writes.

    No agreement threshold: the bench times random-weight models too, whose int8 top-1 need not match float32's; the
    agreement found goes to ``ctx.notes``.
    """
    from .quantize import quantize_model  # lazy: the quantizer is an optional part of ghostnets

    if ctx.calib is None:
        raise RuntimeError("int8 needs calibration images")
    name = model_name(model)
    report = quantize_model(model, ctx.workdir / f"{_file_stem(model, input_size)}_int8",
                            spec=_spec(model), calib=ctx.calib,
                            held_out=ctx.held_out if ctx.held_out is not None else ctx.calib,
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




def deploy_form(model: nn.Module) -> nn.Module:
    """The fastest equivalent of ``model`` for inference, in eval mode: :func:`ghostnets.reparameterize` (for any
    module: every BatchNorm a conv feeds is folded), weights stored channels_last as ghostnets models run."""
    if is_deploy(model):
        return model.eval()
    deployed = reparameterize(model)
    return deployed if hasattr(deployed, "channels_last") else deployed.to(memory_format=torch.channels_last)

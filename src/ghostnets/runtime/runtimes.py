"""The inference runtimes ``ghostnets bench`` and INT8 compare: one registry, each runtime in two steps.

Each runtime turns a deploy-form model into a callable on a float32 NCHW numpy batch that returns the logits as numpy:

- ``eager``: the PyTorch module under ``torch.inference_mode``;
- ``compile``: ``torch.compile`` of it (inductor, static shapes, freezing: weights as constants, pre-packed; compiled
  at load); ``compile-max``: the same in ``max-autotune`` mode (:mod:`.compiled`);
- ``export-onnxruntime`` / ``export-openvino``: ``torch.export`` of it for the batch shape, then the dynamo ONNX
  exporter and ONNX Runtime, or OpenVINO's PyTorch frontend (each checked against eager at load);
- ``onnxruntime``: the verified ONNX export, ``InferenceSession`` with ``intra_op_num_threads``, sequential execution
  and every graph optimisation;
- ``openvino``: the verified OpenVINO IR, compiled for a static batch with ``INFERENCE_NUM_THREADS``, the ``LATENCY``
  hint and f32 precision;
- ``int8``: ``ghostnets.runtime.quantize.quantize_model`` (backend ``auto``), run on the runtime it chose;
- ``cuda``: the PyTorch module on the GPU (a copy moved there once, weights in the deploy form's layout) under
  ``torch.inference_mode``; the batch is copied to a device buffer made at load time only when it is a new array, so
  repeated calls on one batch time the network, not PCIe; ``torch.cuda.synchronize()`` before the logits return;
- ``cuda-compile``: ``torch.compile`` of it on the GPU (default mode, static shapes, inductor's Triton kernels).

``cuda`` and ``cuda-compile`` need a CUDA GPU: without one :func:`check_runtimes` refuses them before any work (GPU
latency for the building-block evaluation after Bonnaerens et al. 2022, arXiv 2208.12694, is measured on such a box).

A runtime works in two steps: ``prepare`` (one-off work per model and input size: export, quantize) and ``load`` (per
batch size: session, compiled model); sessions come from :mod:`.sessions`, timing from :mod:`.timing`.
"""

from __future__ import annotations

import copy
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
    unavailable: Callable[[], str | None] = lambda: None  # why it cannot run on this machine (None: it can)


# ------------------------------------------------------------------------------------------------ torch runtimes


def _torch_fn(module: Callable) -> RunFn:
    def run(x: Batch) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return run


def _load_eager(model: nn.Module, shape, threads: int) -> RunFn:
    torch.set_num_threads(threads)
    return _torch_fn(model.eval())


def _load_compile(model: nn.Module, shape, threads: int, mode: str | None = None) -> RunFn:
    from .compiled import compiled_runner

    torch.set_num_threads(threads)  # inductor's kernels take the thread count in force when they compile
    return compiled_runner(model, tuple(shape), mode=mode)


def _load_exported(runtime: str):
    def load(model: nn.Module, shape, threads: int) -> RunFn:
        from .compiled import exported_runner

        torch.set_num_threads(threads)
        return exported_runner(model, tuple(shape), runtime, threads=threads)

    return load


# -------------------------------------------------------------------------------------------- GPU runtimes


def _cuda_unavailable(name: str) -> str | None:
    """Why runtime ``name`` cannot run here (no CUDA GPU; for ``cuda-compile`` also no Triton), or ``None``."""
    if not torch.cuda.is_available():
        return (f"runtime {name} needs a CUDA GPU; torch.cuda.is_available() is False on this machine; measure on a "
                f"machine with one, e.g. `ghostnets blocks measure --target gpu-box --runtimes {name}` there")
    if name == "cuda-compile" and importlib.util.find_spec("triton") is None:
        return ("runtime cuda-compile needs the package triton (inductor's GPU kernels): pip install triton (PyTorch's "
                "CUDA wheels for Linux bring it)")
    return None


def _prepare_cuda(model: nn.Module, input_size: tuple[int, int], ctx: RuntimeContext) -> nn.Module:
    """A copy of the deploy form on the GPU, once per model (the model itself stays on the CPU: eager's reference);
    ``.to`` keeps each weight's layout, so channels_last weights stay channels_last."""
    return copy.deepcopy(model).eval().to("cuda")


def _channels_last(module: nn.Module) -> bool:
    weight = next((p for p in module.parameters() if p.dim() == 4), None)
    return weight is not None and weight.is_contiguous(memory_format=torch.channels_last) and \
        not weight.is_contiguous()


class CudaRunner:
    """A GPU module as a numpy-to-numpy callable that times the network, not the host-to-device copy.

    At load a device buffer of the batch shape is made (channels_last when the weights are). A call copies the batch
    into it only when it is another array object than the last one, or that array changed in place where a strided
    sample of 64 of its values looks (a change elsewhere goes unseen: pass a new array for new data). Then the
    module runs on the buffer under ``torch.inference_mode``, ``torch.cuda.synchronize()`` waits for the kernels, and
    the logits (small) come back as numpy.
    """

    SAMPLE = 64

    def __init__(self, module: Callable, shape: tuple[int, int, int, int], channels_last: bool,
                 device: str | torch.device = "cuda") -> None:
        self.module, self.shape = module, tuple(shape)
        layout = torch.channels_last if channels_last and len(self.shape) == 4 else torch.contiguous_format
        with torch.inference_mode():
            self.buffer = torch.empty(self.shape, device=device).contiguous(memory_format=layout)
        self._host: np.ndarray | None = None  # the batch in the buffer, kept so its id cannot be reused
        self._sample: np.ndarray | None = None
        self._index = np.linspace(0, int(np.prod(self.shape)) - 1, self.SAMPLE).astype(np.int64)
        self.copies = 0  # host-to-device copies made (the tests count them)

    def _fingerprint(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(-1)[self._index].copy()

    def __call__(self, x: Batch) -> np.ndarray:
        if tuple(x.shape) != self.shape:
            raise ValueError(f"this cuda runtime was loaded for batches of shape {self.shape}, not "
                             f"{tuple(x.shape)}; load it again for that shape")
        with torch.inference_mode():
            if x is not self._host or not np.array_equal(self._fingerprint(x), self._sample, equal_nan=True):
                self.buffer.copy_(torch.from_numpy(np.asarray(x, dtype=np.float32)))
                self._host, self._sample = x, self._fingerprint(x)
                self.copies += 1
            out = self.module(self.buffer)
        if self.buffer.is_cuda:  # (a CPU buffer: the tests of the copying rule)
            torch.cuda.synchronize(self.buffer.device)
        return out.cpu().numpy()


def _load_cuda(model: nn.Module, shape, threads: int) -> RunFn:
    torch.set_num_threads(threads)  # the host side (launches, the logits' copy)
    return CudaRunner(model, shape, _channels_last(model))


def _load_cuda_compile(model: nn.Module, shape, threads: int) -> RunFn:
    torch.set_num_threads(threads)
    return CudaRunner(torch.compile(model, dynamic=False), shape, _channels_last(model))


# ------------------------------------------------------------------------------------------- exported runtimes


def _file_stem(model: nn.Module, input_size: tuple[int, int]) -> str:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name(model))
    return f"{name}_{input_size[0]}x{input_size[1]}"


def _spec(model: nn.Module) -> InputSpec:
    """The preprocessing the model records (a module ghostnets did not build: ImageNet's), for the file's metadata."""
    return record_of(model).input or InputSpec().with_channels(in_chans_of(model))


def export_for_runtime(model: nn.Module, input_size: tuple[int, int], ctx: RuntimeContext, fmt: str) -> Path:
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
    Runtime("compile", "torch.compile of the deploy form (inductor, freezing)", ("torch",),
            lambda m, size, ctx: m, _load_compile),
    Runtime("compile-max", "torch.compile of the deploy form (inductor, freezing, max-autotune)", ("torch",),
            lambda m, size, ctx: m, lambda m, shape, threads: _load_compile(m, shape, threads, "max-autotune")),
    Runtime("export-onnxruntime", "torch.export -> ONNX (dynamo exporter) -> onnxruntime CPU",
            ("onnx", "onnxruntime", "onnxscript"), lambda m, size, ctx: m, _load_exported("onnxruntime")),
    Runtime("export-openvino", "torch.export -> OpenVINO (its PyTorch frontend) CPU, LATENCY hint, f32",
            ("openvino",), lambda m, size, ctx: m, _load_exported("openvino")),
    Runtime("onnxruntime", "onnxruntime CPU, sequential, all graph optimisations", ("onnx", "onnxruntime"),
            lambda m, size, ctx: export_for_runtime(m, size, ctx, "onnx"), _load_onnx),
    Runtime("openvino", "OpenVINO CPU, LATENCY hint, f32", ("onnx", "openvino"),
            lambda m, size, ctx: export_for_runtime(m, size, ctx, "openvino"), _load_openvino),
    Runtime("int8", "INT8 quantized (quantize_model, backend auto)", ("onnx", "onnxruntime"),
            _prepare_int8, _load_int8),
    Runtime("cuda", "PyTorch eager on a CUDA GPU, deploy form, input resident on the device", ("torch",),
            _prepare_cuda, _load_cuda, lambda: _cuda_unavailable("cuda")),
    Runtime("cuda-compile", "torch.compile of the deploy form on a CUDA GPU (default mode)", ("torch",),
            _prepare_cuda, _load_cuda_compile, lambda: _cuda_unavailable("cuda-compile")),
)}


def check_runtimes(names: list[str]) -> list[Runtime]:
    """The runtimes named, or an error that lists the valid names / names the extra a missing package comes with /
    says why a runtime cannot run on this machine (``cuda`` without a GPU)."""
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown:
        raise RuntimeUnavailableError(f"unknown runtime {', '.join(map(repr, unknown))}; choose from "
                                      f"{', '.join(RUNTIMES)}")
    for name in names:
        missing = [p for p in RUNTIMES[name].packages if importlib.util.find_spec(p) is None]
        if missing:
            raise RuntimeUnavailableError(f"runtime {name} needs the package(s) {', '.join(missing)}: "
                                          f"{DEPLOY_EXTRA}")
        reason = RUNTIMES[name].unavailable()
        if reason:
            raise RuntimeUnavailableError(reason)
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

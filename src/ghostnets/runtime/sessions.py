"""The one place ONNX Runtime sessions and OpenVINO compiled models are made, for export checks, INT8 and bench.

Each runner is a callable from a float32 NCHW numpy batch to the logits as numpy.
"""

from __future__ import annotations

import functools
import gc
import os
import signal
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import GhostnetsError
from ..measure.machine import cpu_flags

Runner = Callable[[np.ndarray], np.ndarray]
DEPLOY_EXTRA = "pip install 'ghostnets[deploy]'"


class RuntimeUnavailableError(GhostnetsError, ValueError):
    """An unknown runtime name, or one whose package is not installed."""


def require(module: str, what: str):
    """Import ``module`` or say which extra brings it (``what``: the feature that needs it)."""
    try:
        return __import__(module)
    except ImportError:
        raise RuntimeUnavailableError(f"{what} needs the package {module!r}: {DEPLOY_EXTRA} (or pip install "
                                      f"{module})") from None


def onnx_session(path: str | Path, threads: int | None = None, *, stop_spinning: bool = False):
    """An onnxruntime CPU session: ``threads`` intra-op threads (``None``: onnxruntime's default), sequential
    execution, every graph optimisation. ``stop_spinning``: worker threads stop spinning when a run returns (left
    spinning, they take the CPU from whatever runs next, e.g. another backend being measured)."""
    ort = require("onnxruntime", "ONNX Runtime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if stop_spinning:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_runner(path: str | Path, threads: int | None = None, *, batch: int | None = None,
                stop_spinning: bool = False) -> Runner:
    """:func:`onnx_session` as a callable; ``batch``: refuse a file whose fixed batch size is another."""
    session = onnx_session(path, threads, stop_spinning=stop_spinning)
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name
    fixed = session.get_inputs()[0].shape[0]
    if batch is not None and isinstance(fixed, int) and fixed != batch:
        raise RuntimeError(f"{Path(path).name} takes batches of {fixed} only, not {batch}")
    return lambda x: session.run([output_name], {input_name: x})[0]


@functools.cache
def openvino_core():
    """The process's one ``openvino.Core``: every OpenVINO model is compiled with it, never with a fresh ``Core()``.

    Each Core loads its own CPU plugin, and on Linux each CPU plugin installs an alternate signal stack of its own on
    the calling thread (saving the previous one; openvinotoolkit/openvino PR 11894, AMX), and when destroyed unmaps it
    and puts the saved one back. Two plugins released out of creation order (compiled models freed by the garbage
    collector, or kept alive by a traceback) leave the thread on an unmapped signal stack, and the next signal with a
    Python handler (SIGCHLD after a DataLoader with workers, SIGINT) kills the process with SIGSEGV (SI_KERNEL), no
    traceback. One Core, one plugin for the process's life: nothing is unwound out of order.
    """
    ov = require("openvino", "OpenVINO")
    return ov.Core()


# oneDNN's order of x86 instruction sets: the newest below AMX (AVX-512 with VNNI, BF16 and FP16 kept)
_BELOW_AMX = "AVX512_CORE_FP16"


def _avoid_amx_kernels() -> None:
    """Cap OpenVINO's oneDNN below AMX (``ONEDNN_MAX_CPU_ISA``) on CPUs that have AMX, unless the environment sets it.

    OpenVINO 2026.4.1's AMX int8 kernels (``brgconv_avx512_amx_1x1_I8``) crash with SIGSEGV inside their JIT code on
    an int8 GhostNet whose last stage is 2x2 (a 32-px input) at batches of 1 and 16, not 100 (Xeon with amx_int8; the
    same file runs under the cap, where AVX-512 VNNI kernels take those layers). oneDNN reads the variable once, when
    its first kernel is made, so this runs when ``ghostnets.runtime`` is imported, before any OpenVINO or NNCF call.
    The cap binds torch's own oneDNN too if torch has not used it yet (float32 kernels are the same; bfloat16 ones
    lose AMX). ``ONEDNN_MAX_CPU_ISA=ALL`` in the environment brings AMX back (docs/reference.md, 'OpenVINO on AMX
    CPUs').
    """
    if "amx_int8" in cpu_flags() and not (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")):
        os.environ["ONEDNN_MAX_CPU_ISA"] = _BELOW_AMX


_avoid_amx_kernels()


_ASYNC_SIGNALS = frozenset(signal.valid_signals()) - {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL,
                                                       signal.SIGABRT, signal.SIGTRAP}


def _unblock_in_child() -> None:
    """A process forked from a thread of :func:`on_own_thread` (or from a thread it started: thread pools inherit the
    mask) starts with that mask; OpenVINO's telemetry forks such children and ends them with SIGTERM after 3 s, which
    a blocked SIGTERM made them survive: one hung in ``getaddrinfo`` with no network, and the parent waited for it at
    exit, for ever. The child has no plugins or signal stacks to protect: it takes signals again."""
    if signal.pthread_sigmask(signal.SIG_BLOCK, []) >= {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _ASYNC_SIGNALS)


os.register_at_fork(after_in_child=_unblock_in_child)


def on_own_thread(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` on a fresh thread that receives no asynchronous signals; its result, or its exception.

    For code that makes OpenVINO Cores of its own (NNCF's engines call ``ov.Core()`` for each model they run, see
    :func:`openvino_core`): their CPU plugins install and unwind alternate signal stacks on that thread, which ends
    with the call, never on the caller's. Everything ``fn`` made is released on that thread (the exception's frames
    are cleared, then a collection runs there) so that no plugin is destroyed later on another thread.
    """
    outcome: dict = {}

    def body() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, _ASYNC_SIGNALS)
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as e:  # handed to the caller, with its message and type
            traceback.clear_frames(e.__traceback__)
            outcome["error"] = e
        gc.collect()

    thread = threading.Thread(target=body, name=f"ghostnets-{getattr(fn, '__name__', 'openvino')}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def openvino_compiled(model_or_path, *, shape: tuple[int, ...] | None = None, threads: int | None = None,
                      profiling: bool = False):
    """An OpenVINO CPU model (a file or an ``ov.Model``), f32 precision, the LATENCY hint, ``threads`` threads
    (``None``: OpenVINO's default); ``shape``: compiled for that static input shape; ``profiling``: ``PERF_COUNT``
    on (``InferRequest.get_profiling_info``)."""
    ov = require("openvino", "OpenVINO")
    core = openvino_core()
    model = core.read_model(str(model_or_path)) if isinstance(model_or_path, (str, Path)) else model_or_path
    if shape is not None:
        model.reshape({model.input(0).get_any_name(): ov.PartialShape(list(shape))})
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    if profiling:
        config["PERF_COUNT"] = True
    return core.compile_model(model, "CPU", config)


def openvino_runner(model_or_path, *, shape: tuple[int, ...] | None = None, threads: int | None = None) -> Runner:
    """:func:`openvino_compiled` as a callable (one infer request, reused)."""
    compiled = openvino_compiled(model_or_path, shape=shape, threads=threads)
    request, output = compiled.create_infer_request(), compiled.output(0)
    return lambda x: request.infer([x], share_inputs=True)[output].copy()

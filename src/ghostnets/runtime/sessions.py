"""The one place ONNX Runtime sessions and OpenVINO compiled models are made, for export checks, INT8 and bench.

Each runner is a callable from a float32 NCHW numpy batch to the logits as numpy.
"""

from __future__ import annotations

import functools
import gc
import signal
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import GhostnetsError

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


_ASYNC_SIGNALS = frozenset(signal.valid_signals()) - {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL,
                                                       signal.SIGABRT, signal.SIGTRAP}


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

"""Compiled CPU paths of the deploy form: ``torch.compile`` (inductor, freezing) and ``torch.export`` to the runtimes.

- :func:`compiled_runner`: ``torch.compile(model, dynamic=False, mode=...)`` compiled on a first call made here under
  inductor's *freezing* (``torch._inductor.config.freezing``: parameters become constants, so convolution weights
  are pre-packed into oneDNN's blocked layout once and constant subgraphs are folded; PyTorch docs, "Inductor CPU
  backend", freezing). ``mode="max-autotune"`` also benchmarks kernel choices while compiling.
- :func:`exported_runner`: ``torch.export.export`` of the model for one batch shape (an ``ExportedProgram``: the
  graph ATen sees, no Python), then either ONNX through the dynamo exporter (``torch.onnx.export(..., dynamo=True)``,
  which writes that program) run by ONNX Runtime, or OpenVINO's PyTorch frontend converting the program directly
  (``openvino.convert_model(ExportedProgram)``); both are checked against eager on a random batch before use.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .export import ExportError
from .sessions import Runner, onnx_runner, openvino_runner, require

TOLERANCE = 1e-4  # max |difference| / max |eager logit|


def _torch_runner(module, shape: tuple[int, ...]) -> Runner:
    def run(x: np.ndarray) -> np.ndarray:
        if tuple(x.shape) != shape:  # another shape would recompile, silently, and without freezing
            raise ValueError(f"this compiled model was compiled for batches of shape {shape}, not {tuple(x.shape)}; "
                             f"load the runtime again for that shape")
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return run


def compiled_runner(model: nn.Module, shape: tuple[int, ...], *, mode: str | None = None,
                    freezing: bool = True) -> Runner:
    """``model`` through ``torch.compile`` (static shapes, ``mode``), compiled now on a zero batch of ``shape``."""
    import torch._inductor.config as inductor_config

    compiled = torch.compile(model.eval(), dynamic=False, mode=mode)
    run = _torch_runner(compiled, tuple(shape))
    with inductor_config.patch(freezing=freezing), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # inductor's advice on max-autotune's choices
        run(np.zeros(shape, np.float32))
    return run


def _check(run: Runner, model: nn.Module, shape: tuple[int, ...], what: str) -> Runner:
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with torch.inference_mode():
        reference = model(torch.from_numpy(x)).numpy()
    diff = float(np.abs(run(x) - reference).max() / max(1e-12, float(np.abs(reference).max())))
    if not diff <= TOLERANCE:
        raise ExportError(f"{what} does not compute what the model computes: max relative difference {diff:.2e} "
                          f"(> {TOLERANCE:g}); run the model in eager PyTorch or report the model")
    return run


def exported_runner(model: nn.Module, shape: tuple[int, ...], runtime: str, *, threads: int,
                    workdir: Path | None = None) -> Runner:
    """``torch.export`` of ``model`` for batches of ``shape`` run by ``runtime`` (``onnxruntime`` or ``openvino``)."""
    if runtime not in ("onnxruntime", "openvino"):
        raise ValueError(f"torch.export runs on onnxruntime or openvino, not {runtime!r}")
    require(runtime, f"runtime export-{runtime}")
    model = model.eval()
    x = torch.zeros(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.export.export(model, (x,))
        except Exception as e:
            raise ExportError(f"torch.export could not capture {type(model).__name__}: {type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
        if runtime == "openvino":
            import openvino as ov

            run = openvino_runner(ov.convert_model(program), shape=tuple(shape), threads=threads)
        else:
            require("onnxscript", "runtime export-onnxruntime (the dynamo ONNX exporter)")
            folder = Path(workdir or tempfile.mkdtemp(prefix="ghostnets-export-"))
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{type(model).__name__}_{'x'.join(map(str, shape))}_dynamo.onnx"
            onnx_program = torch.onnx.export(program, (x,), dynamo=True, input_names=["input"],
                                             output_names=["logits"], verbose=False)
            onnx_program.save(str(path))
            run = onnx_runner(path, threads, batch=shape[0])
    return _check(run, model, tuple(shape), f"the torch.export -> {runtime} model")

"""Whether the current forward pass is being captured into a graph rather than run."""

from __future__ import annotations

import torch


def capturing_graph() -> bool:
    """True under ``torch.jit.trace``/``script``, ``torch.compile``/``torch.export`` and ONNX export.

    Python-side checks (input validation, the packed-conv fast path) step aside then: a graph must hold plain ops.
    """
    return (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
            or torch.onnx.is_in_onnx_export())

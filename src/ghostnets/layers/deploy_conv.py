"""The deploy-form convolution: a ``Conv2d`` whose CPU inference runs oneDNN with its weight packed once.

Eager ``F.conv2d`` re-lays-out the weight for oneDNN at every call; a frozen deploy model needs that only once.
``DeployConv2d`` caches the packed weight and calls the same oneDNN convolution (with a following ReLU or sigmoid
fused as a post-op) that ``torch.compile`` uses on CPU, for 15-50 % less time per conv and bit-identical results. It is
an ``nn.Conv2d`` with the same ``weight``/``bias``: state dicts, hooks, export, tracing and autograd see a plain
conv, because the fast path is taken only for float32 CPU inference (no grad) outside tracing, compiling, export
and dispatch modes such as ``FlopCounterMode``; everything else runs ``F.conv2d``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

try:
    from torch.utils._python_dispatch import _get_current_dispatch_mode
except ImportError:  # pragma: no cover - older torch

    def _get_current_dispatch_mode():  # type: ignore[no-redef]
        return True  # unknown: stay on the plain path


_PACKED_CONV = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
_enabled = _PACKED_CONV is not None and torch.backends.mkldnn.is_available()
FUSABLE_ACTIVATIONS = {"relu": F.relu, "sigmoid": torch.sigmoid}


@contextlib.contextmanager
def plain_convolutions() -> Iterator[None]:
    """Run every ``DeployConv2d`` through ``F.conv2d`` inside this block (for counting or debugging)."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def _fast_path_allowed(x: torch.Tensor, conv: nn.Conv2d) -> bool:
    if not _enabled or x.device.type != "cpu" or x.dtype != torch.float32 or conv.weight.dtype != torch.float32:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad):
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling() or \
            torch.onnx.is_in_onnx_export():
        return False
    return _get_current_dispatch_mode() is None


class DeployConv2d(nn.Conv2d):
    """A biased ``Conv2d`` with an optional fused activation (``fused_act``: ``"relu"`` or ``"sigmoid"``); see the
    module docstring for its fast CPU path."""

    def __init__(self, *args, fused_act: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if fused_act is not None and fused_act not in FUSABLE_ACTIVATIONS:
            raise ValueError(f"fused_act must be one of {sorted(FUSABLE_ACTIVATIONS)} or None, got {fused_act!r}")
        self.fused_act = fused_act
        self._packed: tuple[tuple[int, int], torch.Tensor] | None = None
        self._pack_failed = False

    def __getstate__(self) -> dict:  # packed oneDNN tensors neither pickle nor deep-copy
        return {**self.__dict__, "_packed": None}

    def _packed_weight(self, x: torch.Tensor) -> torch.Tensor | None:
        key = (self.weight.data_ptr(), self.weight._version)
        if self._packed is None or self._packed[0] != key:
            try:
                with torch.no_grad():
                    packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                        self.weight.detach().to_mkldnn(), list(self.padding), list(self.stride),
                        list(self.dilation), self.groups, list(x.shape),
                    )
            except (RuntimeError, NotImplementedError):
                self._pack_failed = True
                return None
            self._packed = (key, packed)
        return self._packed[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._pack_failed and self.padding_mode == "zeros" and _fast_path_allowed(x, self):
            packed = self._packed_weight(x)
            if packed is not None:
                return _PACKED_CONV(x, packed, self.bias, list(self.padding), list(self.stride), list(self.dilation),
                                    self.groups, self.fused_act or "none", [], "")
        y = super().forward(x)
        return y if self.fused_act is None else FUSABLE_ACTIVATIONS[self.fused_act](y)

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", fused_act={self.fused_act!r}" if self.fused_act else "")


def fuse_relu(conv: nn.Module, act: nn.Module) -> tuple[nn.Module, nn.Module]:
    """Move a ReLU that follows a ``DeployConv2d`` into it; returns the new ``(conv, act)`` pair."""
    if isinstance(conv, DeployConv2d) and conv.fused_act is None and type(act) is nn.ReLU:
        conv.fused_act = "relu"
        return conv, nn.Identity()
    return conv, act

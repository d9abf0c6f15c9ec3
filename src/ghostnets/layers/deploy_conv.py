"""The deploy-form convolution: a ``Conv2d`` whose CPU inference runs oneDNN with its weight packed once.

Eager ``F.conv2d`` re-lays-out the weight for oneDNN at every call; a frozen deploy model needs that only once.
``DeployConv2d`` caches the packed weight and calls the same oneDNN convolution (with a following ReLU or sigmoid
fused as a post-op) that ``torch.compile`` uses on CPU: 15-50 % less time per conv, the same results up to float
rounding. It is an ``nn.Conv2d`` with the same ``weight``/``bias``: state dicts, hooks, export, tracing and
autograd see a plain conv, because the fast path is taken only for float32 CPU inference with no gradient to
record, outside autocast, tracing, compiling, export, function modes (NNCF's quantizer hooks) and dispatch modes
such as ``FlopCounterMode``; everything else runs ``F.conv2d``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

try:
    from torch.utils._python_dispatch import _get_current_dispatch_mode
except ImportError:  # pragma: no cover - older torch

    def _get_current_dispatch_mode():  # type: ignore[no-redef]
        return True  # unknown: stay on the plain path


_function_modes = getattr(torch._C, "_len_torch_function_stack", lambda: 1)  # unknown: stay on the plain path
_PACKED_CONV = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
_AVAILABLE = _PACKED_CONV is not None and torch.backends.mkldnn.is_available()
_local = threading.local()  # per-thread switch for plain_convolutions()
FUSABLE_ACTIVATIONS = {"relu": F.relu, "sigmoid": torch.sigmoid}


@contextlib.contextmanager
def plain_convolutions() -> Iterator[None]:
    """Run every ``DeployConv2d`` of this thread through ``F.conv2d`` inside this block (to compare or debug)."""
    previous = getattr(_local, "plain", False)
    _local.plain = True
    try:
        yield
    finally:
        _local.plain = previous


def _fast_path_allowed(x: torch.Tensor, conv: nn.Conv2d) -> bool:
    # runs before every deploy conv: cheapest checks first (this costs ~1 µs where the conv costs 20-50 µs)
    if x.dtype is not torch.float32 or not x.is_cpu or not _AVAILABLE or getattr(_local, "plain", False):
        return False
    weight, bias = conv.weight, conv.bias
    if weight.dtype is not torch.float32 or conv.padding_mode != "zeros":
        return False
    if torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    ):
        return False  # autograd must see the differentiable conv2d
    # graph capture: jit.trace (which the classic ONNX exporter uses) and dynamo (torch.compile, torch.export and
    # the dynamo ONNX exporter) must record conv2d; so must autocast and dispatch modes such as FlopCounterMode
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.is_autocast_enabled("cpu"):
        return False
    # so must function modes: NNCF runs its quantizers as hooks on the conv2d calls a TorchFunctionMode sees
    if _function_modes() > 0:
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
        self._forget_packed()

    def _forget_packed(self) -> None:
        # (weight it was packed from, its version, packed weight); holding the source keeps its memory from being
        # reused by another weight, so (identity, version) can never match a different or changed weight
        self._packed: tuple[torch.Tensor, int, torch.Tensor] | None = None

    def __getstate__(self) -> dict:  # packed oneDNN tensors neither pickle nor deep-copy
        return {**self.__dict__, "_packed": None}

    def _apply(self, fn, recurse=True):  # .to(), .half(), .cuda(), ...: the packed weight is stale
        self._forget_packed()
        return super()._apply(fn, recurse)

    def _packed_weight(self, x: torch.Tensor) -> torch.Tensor | None:
        weight = self.weight
        packed = self._packed
        if packed is not None and packed[0].data_ptr() == weight.data_ptr() and packed[1] == weight._version \
                and packed[0].shape == weight.shape:
            return packed[2]
        try:
            with torch.no_grad():
                source = weight.detach()
                packed_weight = torch._C._nn.mkldnn_reorder_conv2d_weight(
                    source.to_mkldnn(), list(self.padding), list(self.stride), list(self.dilation), self.groups,
                    list(x.shape),
                )
        except (RuntimeError, NotImplementedError):
            return None  # this conv cannot be packed here: the plain path serves it
        self._packed = (source, weight._version, packed_weight)
        return packed_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _fast_path_allowed(x, self):
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


def permute_channels(conv: nn.Conv2d, perm: list[int], *, out: bool, inp: bool) -> None:
    """Permute, in place, ``conv``'s output channels (``out``: weight rows and bias; a depthwise conv's channels) and/or
    its input channels (``inp``: weight columns) to ``perm``: how a consumer reads its input in another order."""
    with torch.no_grad():
        if out:
            conv.weight.data = conv.weight.data[perm]
            if conv.bias is not None:
                conv.bias.data = conv.bias.data[perm]
        if inp:
            conv.weight.data = conv.weight.data[:, perm]
    if hasattr(conv, "_forget_packed"):
        conv._forget_packed()

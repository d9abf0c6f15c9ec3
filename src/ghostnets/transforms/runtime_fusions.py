"""Rewrites of the deploy form that the runtimes do not find themselves, kept where they were measured to pay.

:func:`fuse_for_inference` applies them to a copy of a deploy-form model; each keeps its outputs equal to the deploy
form's (float rounding, well under 1e-4):

- **DFC pooling folded into its first conv** (GhostNetV2's DFC attention, Tang et al. 2022, arXiv 2211.12905):
  ``conv1x1(avg_pool2d(x, 2))`` is ``conv2x2_stride2(x)`` with the 1x1 weights divided by 4 at each of the four
  taps (the pool is linear and the conv reads each 2x2 window once; both drop an odd last row or column alike), so
  the half-resolution copy of the block input is never written. Inputs with a side of 1 at that point (images under
  64 px) keep the pool-by-1 path.

Tried and dropped, with figures in BENCHMARKS.md ("Deploy latency"): the Ghost module's concat removed by one
grouped conv writing intrinsic and ghost maps interleaved (an identity and the cheap kernel per group) with the
consumer's weights permuted to read that order; OpenVINO and ONNX Runtime run a 2-outputs-per-group conv off their
depthwise fast path, 1.0-4.4x slower than the depthwise conv + concat it replaces.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.deploy_conv import DeployConv2d
from ..layers.dfc import DFCAttention, _pool_kernel
from ..record import is_deploy


class PooledConvDFC(nn.Module):
    """A deploy-form :class:`DFCAttention` whose ``avg_pool2d(2) -> 1x1 conv`` is one 2x2 stride-2 conv."""

    def __init__(self, dfc: DFCAttention) -> None:
        super().__init__()
        first = dfc[0]
        if first.kernel_size != (1, 1) or first.stride != (1, 1) or first.groups != 1:
            raise ValueError("only a DFC attention whose first conv is 1x1, stride 1, ungrouped can be folded")
        self.dfc = dfc  # the original, for inputs too small to pool by 2
        self.pooled = DeployConv2d(first.in_channels, first.out_channels, 2, stride=2, bias=True)
        with torch.no_grad():
            self.pooled.weight.copy_(first.weight.expand(-1, -1, 2, 2) / 4)
            self.pooled.bias.copy_(first.bias)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if _pool_kernel(x) != (2, 2):
            return self.dfc(x, size)
        gate = self.pooled(x)
        for module in list(self.dfc)[1:]:
            if type(module) is not nn.Identity:
                gate = module(gate)
        if getattr(self.dfc[4], "fused_act", None) != "sigmoid":
            gate = torch.sigmoid(gate)
        return F.interpolate(gate, size=size, mode="nearest")


def fold_dfc_pooling(model: nn.Module) -> int:
    """Replace (in place) every deploy-form DFC attention of ``model`` by :class:`PooledConvDFC`; returns how many."""
    targets = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if isinstance(child, DFCAttention) and isinstance(child[0], nn.Conv2d) and child[0].bias is not None
               and child[0].kernel_size == (1, 1) and child[0].stride == (1, 1)]
    for parent, name, child in targets:
        setattr(parent, name, PooledConvDFC(child))
    return len(targets)


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """A copy of the deploy-form ``model`` with the fusions above applied (a model without DFC comes back as an
    equal copy). Refuses a training-form model: fold it first (``ghostnets.reparameterize``)."""
    if not is_deploy(model) and any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        raise ValueError("fuse_for_inference takes the deploy form: call ghostnets.reparameterize(model) first")
    fused = copy.deepcopy(model).eval()
    fold_dfc_pooling(fused)
    return fused

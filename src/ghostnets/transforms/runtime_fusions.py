"""Rewrites of the deploy form that the runtimes do not find themselves; each exact, each measured, one kept.

:func:`fuse_for_inference` returns a copy of a deploy-form model with the rewrites chosen, outputs equal to the
deploy form's (float rounding, well under 1e-4). ``benchmarks/runtime_fusions.py`` times each against the deploy
form in ONNX Runtime and OpenVINO (BENCHMARKS.md, "Computations the runtimes do not find"). Only the ShuffleNet V2
rewrite paid (0.80-0.83x), so only it is applied by ``ghostnets export`` and ``bench``; the Ghost ones stay for
measuring on other targets.

- ``ghost=True`` (:class:`InterleavedGhost`; GhostNet eq. 3, Han et al. 2020, arXiv 1911.11907): ghost1's concat
  removed. One grouped conv (``groups = init``, two outputs per group: an identity tap and the cheap kernel) writes
  [p0, c0, p1, c1, ...]; the block's consumers (DFC gate, stride-2 depthwise conv, SE, ghost2's primary conv) are
  permuted to read that order. The runtimes have no fast kernel for two outputs per group: 1.1-1.7x slower.
- ``ghost="split"`` (:class:`SplitReadBottleneck`): in stride-1 blocks without SE or DFC, ghost2's 1x1 conv reads
  ghost1's halves where they are written (``W [p; c] = W_p p + W_c c``): two convs and an add for a concat.
- ``dfc=True`` (:class:`PooledConvDFC`; GhostNetV2, Tang et al. 2022, arXiv 2211.12905): DFC's ``avg_pool2d(2)``
  and 1x1 conv as one 2x2 stride-2 conv with the weights / 4 at each tap (both linear; both drop an odd last row).
- ``se=True`` (:class:`LinearSE`; Hu et al. 2018, arXiv 1709.01507): SE's 1x1 convs on the pooled 1x1 map as
  matrix products.
- ``shuffle=True`` (:class:`~ghostnets.transforms.shuffle_free.ShuffleFreeUnits`; ShuffleNet V2, Ma et al. 2018,
  arXiv 1807.11164): runs of ShuffleNet V2 units without their channel shuffles and splits, the permutations moved
  into later convolutions' weights.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.deploy_conv import DeployConv2d, permute_channels
from ..layers.dfc import DFCAttention, _pool_kernel
from ..layers.ghost import GhostBottleneck, GhostModule
from ..layers.squeeze_excite import SqueezeExcite
from .shuffle_free import remove_channel_shuffles


class InterleavedGhost(nn.Module):
    """A deploy Ghost module (ratio 2) writing [p0, c0, p1, c1, ...][:out] with no concat; ``perm[k]`` is the
    concat-order channel at position k. ``short_conv`` (a DFC gate, if any) is already in that order."""

    def __init__(self, ghost: GhostModule) -> None:
        super().__init__()
        primary, cheap = ghost.primary_conv[0], ghost.cheap_operation[0]
        init, k = ghost.init_channels, cheap.kernel_size
        weight = torch.zeros(2 * init, 1, *k, dtype=cheap.weight.dtype)
        weight[0::2, 0, k[0] // 2, k[1] // 2] = 1.0  # identity: act(act(p)) = act(p) for ReLU or none
        weight[1::2] = cheap.weight.detach()
        bias = torch.zeros(2 * init, dtype=weight.dtype)
        bias[1::2] = cheap.bias.detach()
        self.primary = primary
        self.pair = DeployConv2d(init, 2 * init, k, padding=cheap.padding, groups=init, fused_act=cheap.fused_act)
        with torch.no_grad():
            self.pair.weight.copy_(weight)
            self.pair.bias.copy_(bias)
        self.out_channels = ghost.out_channels
        self.perm = [i // 2 + (init if i % 2 else 0) for i in range(2 * init)][: ghost.out_channels]
        self.short_conv = ghost.short_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pair(self.primary(x))
        if out.shape[1] != self.out_channels:
            out = out[:, : self.out_channels]
        if self.short_conv is not None:
            out = out * self.short_conv(x, out.shape[-2:])
        return out


class PooledConvDFC(nn.Module):
    """DFC attention with avg_pool2d(2) + 1x1 conv as one 2x2 stride-2 conv (falls back below 2 px a side)."""

    def __init__(self, dfc: DFCAttention) -> None:
        super().__init__()
        first = dfc[0]
        self.first, self.horizontal, self.vertical = first, dfc[2], dfc[4]
        self.down = DeployConv2d(first.in_channels, first.out_channels, 2, stride=2)
        with torch.no_grad():
            self.down.weight.copy_(first.weight.detach().expand(-1, -1, 2, 2) / 4)
            self.down.bias.copy_(first.bias.detach())

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        kernel = _pool_kernel(x)
        y = self.down(x) if kernel == (2, 2) else self.first(F.avg_pool2d(x, kernel, kernel))
        return F.interpolate(self.vertical(self.horizontal(y)), size=size, mode="nearest")


class LinearSE(nn.Module):
    """Squeeze-and-Excitation (Hu et al. 2018) with its pooled 1x1 convs as ``F.linear`` on the (N, C) means."""

    def __init__(self, se: SqueezeExcite) -> None:
        super().__init__()
        self.reduce = nn.Linear(se.conv_reduce.in_channels, se.conv_reduce.out_channels)
        self.expand = nn.Linear(se.conv_expand.in_channels, se.conv_expand.out_channels)
        with torch.no_grad():
            for lin, conv in ((self.reduce, se.conv_reduce), (self.expand, se.conv_expand)):
                lin.weight.copy_(conv.weight.detach().flatten(1))
                lin.bias.copy_(conv.bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = F.hardsigmoid(self.expand(F.relu(self.reduce(x.mean((2, 3))))))
        return x * gate[:, :, None, None]


class SplitReadBottleneck(nn.Module):
    """A stride-1 bottleneck with no SE/DFC whose ghost2 primary 1x1 conv reads ghost1's two halves where they are
    written: W [p; c] = W_p p + W_c c (two convs and an add instead of a concat)."""

    def __init__(self, block: GhostBottleneck) -> None:
        super().__init__()
        g1, g2 = block.ghost1, block.ghost2
        init, w = g1.init_channels, g2.primary_conv[0]
        self.primary, self.cheap = g1.primary_conv[0], g1.cheap_operation[0]
        self.read_p = DeployConv2d(init, w.out_channels, 1)
        self.read_c = nn.Conv2d(init, w.out_channels, 1, bias=False)
        with torch.no_grad():
            self.read_p.weight.copy_(w.weight[:, :init])
            self.read_p.bias.copy_(w.bias)
            self.read_c.weight.copy_(w.weight[:, init:])
        self.cheap2, self.trim2, self.out2 = g2.cheap_operation[0], g2.trim, g2.out_channels
        self.shortcut, self.has_residual = block.shortcut, block.has_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.primary(x)
        y = self.read_p(p) + self.read_c(self.cheap(p))
        out = torch.cat([y, self.cheap2(y)], dim=1)
        if self.trim2:
            out = out[:, : self.out2]
        return out + self.shortcut(x) if self.has_residual else out


def _plain(conv: object, *, groups: int | None = None) -> bool:
    return isinstance(conv, DeployConv2d) and (groups is None or conv.groups == groups)


def _interleavable(block: GhostBottleneck) -> bool:
    g1 = block.ghost1
    if type(g1) is not GhostModule or g1.ratio != 2 or g1.intrinsic_scale is not None:
        return False
    primary, cheap = g1.primary_conv[0], g1.cheap_operation[0]
    if not (_plain(primary, groups=1) and _plain(cheap, groups=g1.init_channels)):
        return False
    if primary.fused_act != cheap.fused_act:
        return False
    if any(not isinstance(m, nn.Identity) for seq in (g1.primary_conv, g1.cheap_operation) for m in seq[1:]):
        return False
    if getattr(block.ghost2, "primary_conv", None) is None or not _plain(block.ghost2.primary_conv[0], groups=1):
        return False
    if block.conv_dw is not None and not (_plain(block.conv_dw, groups=g1.out_channels)
                                          and isinstance(block.bn_dw, nn.Identity)):
        return False
    if block.se is not None and type(block.se) is not SqueezeExcite:
        return False
    return g1.short_conv is None or all(_plain(g1.short_conv[i]) for i in (0, 2, 4))


def _split_readable(block: GhostBottleneck) -> bool:
    g2 = block.ghost2
    return (_interleavable(block) and not block.ghost1.trim and block.conv_dw is None and block.se is None
            and block.ghost1.short_conv is None and type(g2) is GhostModule and g2.intrinsic_scale is None
            and g2.short_conv is None and _plain(g2.cheap_operation[0])
            and all(isinstance(m, nn.Identity) for seq in (g2.primary_conv, g2.cheap_operation) for m in seq[1:]))


def _interleave(block: GhostBottleneck) -> None:
    ghost = InterleavedGhost(block.ghost1)
    perm = ghost.perm
    if ghost.short_conv is not None:
        for i in (0, 2, 4):
            permute_channels(ghost.short_conv[i], perm, out=True, inp=False)
    if block.conv_dw is not None:
        permute_channels(block.conv_dw, perm, out=True, inp=False)
    if block.se is not None:
        permute_channels(block.se.conv_reduce, perm, out=False, inp=True)
        permute_channels(block.se.conv_expand, perm, out=True, inp=False)
    permute_channels(block.ghost2.primary_conv[0], perm, out=False, inp=True)
    block.ghost1 = ghost


@torch.no_grad()
def fuse_for_inference(model: nn.Module, *, ghost: bool | str = True, dfc: bool = True, se: bool = True,
                       shuffle: bool = True) -> nn.Module:
    """A copy of the deploy form ``model`` with the chosen rewrites (module docstring); ``model`` is untouched.

    ``ghost="split"``: instead of interleaving, stride-1 bottlenecks without SE/DFC read ghost1's halves in place
    (:class:`SplitReadBottleneck`)."""
    if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        raise ValueError("fuse_for_inference takes a deploy form: run ghostnets.reparameterize(model) first")
    model = copy.deepcopy(model).eval()
    if shuffle:
        remove_channel_shuffles(model)
    if ghost == "split":
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, GhostBottleneck) and _split_readable(child):
                    setattr(parent, name, SplitReadBottleneck(child))
    elif ghost:
        for block in [m for m in model.modules() if isinstance(m, GhostBottleneck)]:
            if _interleavable(block):
                _interleave(block)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if dfc and isinstance(child, DFCAttention) and _plain(child[0], groups=1) \
                    and child[0].kernel_size == (1, 1) and child[0].stride == (1, 1) and child[0].padding == (0, 0):
                setattr(parent, name, PooledConvDFC(child))
            elif se and type(child) is SqueezeExcite:
                setattr(parent, name, LinearSE(child))
    return model

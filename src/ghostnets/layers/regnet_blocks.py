"""The RegNetX bottleneck (Radosavovic et al., "Designing Network Design Spaces", CVPR 2020, arXiv 2003.13678): the
X block, in the two layouts whose weights users have (docs/reference.md §12).

conv1x1 -> BN -> ReLU -> grouped conv3x3 (stride) -> BN -> ReLU -> conv1x1 -> BN, + shortcut (identity, or a strided
1x1 conv + BN), ReLU; expansion 1, no SE, ``groups = width // min(width, group_width)``.

``XBottleneck``: G-GhostNet's official layout (huawei-noah ``g_ghost_regnet.py``, from d-li14/regnet.pytorch), which is
torchvision's ResNet layout (``conv1..3``, ``bn1..3``, ``downsample.{0,1}``): ResNet's :class:`Bottleneck` with
expansion 1 and the grouped 3x3. ``ResBottleneckBlock``: torchvision's RegNet layout (``f.{a,b,c}.{0,1}``,
``proj.{0,1}``). Both compute the same function; only the names of their weights differ.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .conv_bn_act import ConvSequence, activation, can_update_in_place, conv_norm, is_identity
from .drop_path import DropPath
from .resnet_blocks import Bottleneck


def regnet_groups(width: int, group_width: int) -> int:
    """Groups of the 3x3 conv: ``width // min(width, group_width)`` (a group wider than the block is the block)."""
    if group_width < 1:
        raise ValueError(f"group_width must be >= 1, got {group_width}")
    groups = width // min(width, group_width)
    if width % groups:
        raise ValueError(f"a {width}-channel RegNetX block cannot have groups of width {group_width}: {width} is not "
                         f"divisible by {groups} groups; pick a width that is a multiple of the group width")
    return groups


def _grouped_3x3(groups: int):
    """ResNet's ``conv_layer`` factory with ``groups`` on the 3x3 conv (the 1x1 convs and the shortcut stay dense)."""

    def conv(in_chs: int, out_chs: int, k: int, stride: int, padding: int, bias: bool = False) -> nn.Conv2d:
        return nn.Conv2d(in_chs, out_chs, k, stride, padding, groups=groups if k == 3 else 1, bias=bias)

    return conv


class XBottleneck(Bottleneck):
    """RegNetX's block in G-GhostNet's official layout (``conv1..3``, ``bn1..3``, ``downsample``); its forward pass and
    ``fuse()`` are ResNet's bottleneck's."""

    expansion = 1

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, *, group_width: int, drop_path: float = 0.0):
        super().__init__(in_chs, out_chs, stride, _grouped_3x3(regnet_groups(out_chs, group_width)),
                         drop_path=drop_path)


class ResBottleneckBlock(nn.Module):
    """RegNetX's block in torchvision's layout: ``relu(proj(x) + f(x))``, ``f = a -> b -> c`` (each conv, BN[, ReLU]).

    ``deploy=True``: built with the BatchNorms folded (``f.a.0.weight/bias``...), as ``fuse()`` leaves it.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, *, group_width: int, drop_path: float = 0.0,
                 deploy: bool = False) -> None:
        super().__init__()
        groups = regnet_groups(out_chs, group_width)

        def unit(i: int, o: int, k: int, s: int = 1, g: int = 1, act: bool = True) -> ConvSequence:
            relu = [activation(nn.ReLU)] if act else []
            return ConvSequence(*conv_norm(i, o, k, s, groups=g, deploy=deploy), *relu).fuse_relus()

        self.proj = unit(in_chs, out_chs, 1, stride, act=False) if stride != 1 or in_chs != out_chs else None
        self.f = nn.Sequential(OrderedDict(a=unit(in_chs, out_chs, 1), b=unit(out_chs, out_chs, 3, stride, groups),
                                           c=unit(out_chs, out_chs, 1, act=False)))
        self.activation = nn.ReLU(inplace=True)
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.f(x)
        if not is_identity(self.drop_path):
            out = self.drop_path(out)
        shortcut = x if self.proj is None else self.proj(x)
        return self.activation(out.add_(shortcut) if can_update_in_place(out) else out + shortcut)

    def fuse(self) -> ResBottleneckBlock:
        """Its ``ConvSequence`` units fold their own BatchNorms in the walk; nothing else holds one."""
        for seq in (self.proj, *self.f):
            if seq is not None:
                seq.fuse()
        return self

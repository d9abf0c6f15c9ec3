"""ResNet's residual blocks (He et al., CVPR 2016, arXiv 1512.03385), with a ``conv_layer`` factory so the Ghost
versions (GhostNet, arXiv 1911.11907, Sec. 4.1) are the same blocks built with Ghost modules.

``BasicBlock``: ResNet-56's (CIFAR, "option A" zero-padding shortcut or a 1x1 projection). ``Bottleneck``: ResNet-50
v1.5, torchvision's layout (stride on the 3x3 conv).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .conv_bn_act import ConvSequence, can_update_in_place, fold_named_pairs, is_identity
from .drop_path import DropPath

ConvFactory = Callable[..., nn.Module]


class ZeroPadShortcut(nn.Module):
    """He et al.'s CIFAR "option A": subsample by the stride and zero-pad the new channels; no parameters."""

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.stride, self.pad = stride, out_chs - in_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


def _projection(in_chs: int, out_chs: int, stride: int, conv_layer: ConvFactory) -> ConvSequence:
    return ConvSequence(conv_layer(in_chs, out_chs, 1, stride, 0, bias=False), nn.BatchNorm2d(out_chs))


class _Residual(nn.Module):
    """The residual sum shared by both blocks: ``relu(branch(x) + shortcut(x))`` with optional stochastic depth."""

    def finish(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if not is_identity(self.drop_path):
            out = self.drop_path(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        out = out.add_(shortcut) if can_update_in_place(out) else out + shortcut
        return self.relu(out)


class BasicBlock(_Residual):
    """conv3x3 (stride) -> BN -> ReLU -> conv3x3 -> BN, + shortcut, ReLU (ResNet-56's block)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, conv_layer: ConvFactory, *, option_a: bool,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_layer(in_chs, out_chs, 3, stride, 1, bias=False), nn.BatchNorm2d(out_chs)
        self.conv2, self.bn2 = conv_layer(out_chs, out_chs, 3, 1, 1, bias=False), nn.BatchNorm2d(out_chs)
        self.relu = nn.ReLU(inplace=True)
        if stride == 1 and in_chs == out_chs:
            self.downsample = None
        elif option_a:
            self.downsample = ZeroPadShortcut(in_chs, out_chs, stride)
        else:
            self.downsample = _projection(in_chs, out_chs, stride, conv_layer)
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.finish(self.bn2(self.conv2(out)), x)

    def fuse(self) -> BasicBlock:
        return fold_named_pairs(self, [("conv1", "bn1"), ("conv2", "bn2")])


class Bottleneck(_Residual):
    """conv1x1 -> conv3x3 (stride) -> conv1x1 (4x), each with BN, + shortcut, ReLU (ResNet-50 v1.5, torchvision)."""

    expansion = 4

    def __init__(self, in_chs: int, width: int, stride: int, conv_layer: ConvFactory, *, drop_path: float = 0.0):
        super().__init__()
        out_chs = width * self.expansion
        self.conv1, self.bn1 = conv_layer(in_chs, width, 1, 1, 0, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv_layer(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = conv_layer(width, out_chs, 1, 1, 0, bias=False), nn.BatchNorm2d(out_chs)
        self.relu = nn.ReLU(inplace=True)
        same = stride == 1 and in_chs == out_chs
        self.downsample = None if same else _projection(in_chs, out_chs, stride, conv_layer)
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.finish(self.bn3(self.conv3(out)), x)

    def fuse(self) -> Bottleneck:
        return fold_named_pairs(self, [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")])

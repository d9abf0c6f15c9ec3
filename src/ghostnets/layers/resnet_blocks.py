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

from .block_registry import register_block
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


def projection_shortcut(in_chs: int, out_chs: int, stride: int, conv_layer: ConvFactory) -> ConvSequence:
    return ConvSequence(conv_layer(in_chs, out_chs, 1, stride, 0, bias=False), nn.BatchNorm2d(out_chs))


def inner_width(planes: int, groups: int = 1, base_width: int = 64, mid_chs: int | None = None) -> int:
    """The grouped 3x3 conv's width: ``mid_chs``, else ResNeXt's ``int(planes * base_width / 64) * groups``
    (torchvision's rule); the cardinality ``groups`` must divide it (Xie et al., arXiv 1611.05431, Sec. 3.3)."""
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"Bottleneck: the cardinality (groups) must be an integer >= 1, got {groups!r}")
    rule = ("mid_chs" if mid_chs is not None else
            f"int(planes * base_width / 64) * groups = int({planes} * {base_width} / 64) * {groups}")
    width = int(planes * base_width / 64) * groups if mid_chs is None else int(mid_chs)
    if width < groups or width % groups:
        raise ValueError(f"Bottleneck: the cardinality (groups={groups}) must divide the inner width, which must be "
                         f">= groups; the inner width is {rule} = {width}. Choose groups dividing it, or a larger "
                         "width (base_width / planes / mid_chs)")
    return width


class ResidualBlock(nn.Module):
    """The residual sum every ResNet-style block shares: ``relu(branch(x) + shortcut(x))`` with optional stochastic
    depth; :meth:`init_shortcut` builds the shortcut, the ReLU and the drop path, :meth:`finish` applies them."""

    def init_shortcut(self, in_chs: int, out_chs: int, stride: int, conv_layer: ConvFactory, drop_path: float,
                      option_a: bool = False) -> None:
        """The identity where shapes allow, else option A (zero padding) or a 1x1 conv + BN projection."""
        self.relu = nn.ReLU(inplace=True)
        if stride == 1 and in_chs == out_chs:
            self.downsample = None
        elif option_a:
            self.downsample = ZeroPadShortcut(in_chs, out_chs, stride)
        else:
            self.downsample = projection_shortcut(in_chs, out_chs, stride, conv_layer)
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()

    def finish(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if not is_identity(self.drop_path):
            out = self.drop_path(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        out = out.add_(shortcut) if can_update_in_place(out) else out + shortcut
        return self.relu(out)


class BasicBlock(ResidualBlock):
    """conv3x3 (stride) -> BN -> ReLU -> conv3x3 -> BN, + shortcut, ReLU (ResNet-56's block)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, conv_layer: ConvFactory, *, option_a: bool,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.out_chs = out_chs
        self.conv1, self.bn1 = conv_layer(in_chs, out_chs, 3, stride, 1, bias=False), nn.BatchNorm2d(out_chs)
        self.conv2, self.bn2 = conv_layer(out_chs, out_chs, 3, 1, 1, bias=False), nn.BatchNorm2d(out_chs)
        self.init_shortcut(in_chs, out_chs, stride, conv_layer, drop_path, option_a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.finish(self.bn2(self.conv2(out)), x)

    def fuse(self) -> BasicBlock:
        return fold_named_pairs(self, [("conv1", "bn1"), ("conv2", "bn2")])


class Bottleneck(ResidualBlock):
    """conv1x1 -> conv3x3 (stride, ``groups``) -> conv1x1 (4x), each with BN, [attention], + shortcut, ReLU.

    ResNet-50 v1.5 in torchvision's layout (stride on the 3x3 conv). ``groups`` and ``base_width`` make it ResNeXt's
    grouped bottleneck (Xie et al., CVPR 2017, arXiv 1611.05431: inner width ``int(planes * base_width / 64) *
    groups``, torchvision's rule; the CIFAR ResNeXt-29's ``floor(features * baseWidth / 64) * C`` is the same) and
    Wide ResNet-50-2 (``base_width=128``; Zagoruyko & Komodakis, BMVC 2016, arXiv 1605.07146); ``mid_chs`` sets the
    inner width directly. ``attn_layer(channels)`` is applied after ``bn3``, before the residual
    add, stored as ``attn_name`` (SE-ResNet's ``se``, Hu et al.; ECA-Net's ``eca``, Wang et al.).
    """

    expansion = 4

    def __init__(self, in_chs: int, planes: int, stride: int, conv_layer: ConvFactory = nn.Conv2d, *,
                 groups: int = 1, base_width: int = 64, mid_chs: int | None = None, kernel_size: int = 3,
                 attn_layer: Callable[[int], nn.Module] | None = None, attn_name: str = "se",
                 drop_path: float = 0.0) -> None:
        super().__init__()
        width = inner_width(planes, groups, base_width, mid_chs)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"Bottleneck: kernel_size must be an odd integer >= 1, got {kernel_size}")
        self.out_chs = out_chs = planes * self.expansion
        self.conv1, self.bn1 = conv_layer(in_chs, width, 1, 1, 0, bias=False), nn.BatchNorm2d(width)
        grouped = {} if groups == 1 else {"groups": groups}
        self.conv2 = conv_layer(width, width, kernel_size, stride, kernel_size // 2, bias=False, **grouped)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3, self.bn3 = conv_layer(width, out_chs, 1, 1, 0, bias=False), nn.BatchNorm2d(out_chs)
        self.attn_name = attn_name
        if attn_layer is not None:
            setattr(self, attn_name, attn_layer(out_chs))
        self.init_shortcut(in_chs, out_chs, stride, conv_layer, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        attention = getattr(self, self.attn_name, None)
        if attention is not None:
            out = attention(out)
        return self.finish(out, x)

    def fuse(self) -> Bottleneck:
        return fold_named_pairs(self, [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")])


RESNEXT_CARDINALITY, RESNEXT_BASE_WIDTH = 32, 4  # ResNeXt-50's 32x4d template (arXiv 1611.05431, Table 1)


def bottleneck_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3, mid_chs: int | None = None,
                     groups: int = 1, base_width: int = 64, attn_layer: Callable[[int], nn.Module] | None = None,
                     attn_name: str = "se") -> Bottleneck:
    """A :class:`Bottleneck` through the block interface: ``out_chs`` (a multiple of 4, the expansion) out, inner
    width ``mid_chs`` or ResNeXt's rule on ``out_chs / 4`` planes."""
    if out_chs % Bottleneck.expansion:
        raise ValueError(f"a bottleneck's out_chs is 4 x its planes (the expansion); got out_chs={out_chs}, not a "
                         "multiple of 4")
    return Bottleneck(in_chs, out_chs // Bottleneck.expansion, stride, groups=groups, base_width=base_width,
                      mid_chs=mid_chs, kernel_size=kernel_size, attn_layer=attn_layer, attn_name=attn_name)


@register_block("resnext", honours=("kernel_size", "mid_chs"),
                paper="Xie et al., Aggregated Residual Transformations for Deep Neural Networks (ResNeXt), CVPR 2017",
                arxiv="1611.05431", example=(64, 128),
                summary="grouped bottleneck: 1x1 -> kxk grouped conv (cardinality 32, stride) -> 1x1 (4x planes), BN "
                        "after each, + shortcut (ResNeXt's 32x4d: inner width out_chs / 2)")
def resnext_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3,
                  mid_chs: int | None = None) -> Bottleneck:
    return bottleneck_block(in_chs, out_chs, stride, kernel_size=kernel_size, mid_chs=mid_chs,
                            groups=RESNEXT_CARDINALITY, base_width=RESNEXT_BASE_WIDTH)

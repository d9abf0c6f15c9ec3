"""The ShuffleNet V2 unit (Ma, Zhang, Zheng, Sun, "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
Design", ECCV 2018, arXiv 1807.11164, Fig. 3 (c) and (d)) in torchvision's ``InvertedResidual`` layout, so
torchvision's weights load as they are (docs/reference.md §13).

Stride 1 (Fig. 3c): split the channels in half; the left half passes untouched, the right half runs
``branch2`` = 1x1 conv, BN, ReLU, depthwise kxk, BN, 1x1 conv, BN, ReLU; concat; channel shuffle with 2 groups.
Stride 2 (Fig. 3d): no split; ``branch1`` = depthwise kxk stride 2, BN, 1x1 conv, BN, ReLU and ``branch2`` (its
depthwise conv at stride 2) both read the whole input and give half the output each; concat; shuffle.
"""

from __future__ import annotations

import torch
from torch import nn

from .block_registry import register_block
from .conv_bn_act import ActFactory, ConvSequence, activation, conv_norm

SHUFFLE_GROUPS = 2  # the unit concatenates two branches and shuffles them with 2 groups (Sec. 3)


def channel_shuffle(x: torch.Tensor, groups: int = SHUFFLE_GROUPS) -> torch.Tensor:
    """ShuffleNet's channel shuffle (Zhang et al., CVPR 2018, Sec. 3.1): ``(g, C/g)`` channels transposed to
    ``(C/g, g)``; torchvision's ``channel_shuffle``, written without the batch size so exports take any batch."""
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


def check_shuffle_geometry(in_chs: int, out_chs: int, stride: int, kernel_size: int) -> None:
    """Refuse what the unit cannot build, with the rule it broke."""
    if stride not in (1, 2):
        raise ValueError(f"a ShuffleNet V2 unit takes stride 1 (channel split) or 2 (both branches), got {stride}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"the depthwise kernel_size must be odd (padding k // 2 keeps the size), got {kernel_size}")
    if in_chs < 1 or out_chs < 2 or out_chs % 2:
        raise ValueError(f"a ShuffleNet V2 unit concatenates two equal halves: out_chs must be even and >= 2, got "
                         f"in_chs={in_chs}, out_chs={out_chs}; pick an even out_chs")
    if stride == 1 and in_chs != out_chs:
        raise ValueError(f"a stride-1 ShuffleNet V2 unit keeps its width (in_chs == out_chs, guideline G1), got "
                         f"in_chs={in_chs}, out_chs={out_chs}; use stride 2 to change the width")


class ShuffleV2Block(nn.Module):
    """ShuffleNet V2's unit with torchvision's names: ``branch1.{0..4}`` (stride 2 only; an empty ``Sequential`` at
    stride 1, as torchvision has) and ``branch2.{0..7}``; ``mid_chs``: the right branch's hidden width (the official
    megvii code's ``mid_channels``; default half the output, torchvision's and the paper's)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3, mid_chs: int | None = None,
                 act_layer: ActFactory = nn.ReLU) -> None:
        super().__init__()
        check_shuffle_geometry(in_chs, out_chs, stride, kernel_size)
        half = out_chs // 2
        mid = half if mid_chs is None else int(mid_chs)
        if mid < 1:
            raise ValueError(f"mid_chs must be >= 1, got {mid_chs}")
        self.stride, self.in_chs, self.out_chs = stride, in_chs, out_chs
        if stride == 2:
            self.branch1 = ConvSequence(*conv_norm(in_chs, in_chs, kernel_size, stride, groups=in_chs),
                                        *conv_norm(in_chs, half, 1), activation(act_layer))
        else:
            self.branch1 = ConvSequence()
        self.branch2 = ConvSequence(
            *conv_norm(in_chs if stride == 2 else half, mid, 1), activation(act_layer),
            *conv_norm(mid, mid, kernel_size, stride, groups=mid),
            *conv_norm(mid, half, 1), activation(act_layer),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            left, right = x.chunk(2, dim=1)
            out = torch.cat((left, self.branch2(right)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out)

    def fuse(self) -> ShuffleV2Block:
        """Fold every BatchNorm into the conv before it (the depthwise convs' too) and fuse the ReLUs, in place."""
        self.branch1.fuse()
        self.branch2.fuse()
        return self


@register_block("shufflev2", honours=("kernel_size", "expansion", "mid_chs", "act_layer"),
                paper="Ma et al., ShuffleNet V2, ECCV 2018", arxiv="1807.11164",
                summary="channel split, 1x1 -> dw kxk -> 1x1 on one half (both branches at stride 2), concat, "
                        "channel shuffle")
def shufflev2_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3,
                    expansion: float | None = None, mid_chs: int | None = None,
                    act_layer: ActFactory = nn.ReLU) -> nn.Module:
    """``expansion``: the right branch's hidden width over its output width ``out_chs / 2`` (1 in the paper)."""
    if expansion is not None:
        if expansion <= 0:
            raise ValueError(f"expansion must be > 0, got {expansion}")
        mid_chs = max(1, round(out_chs // 2 * expansion))
    return ShuffleV2Block(in_chs, out_chs, stride, kernel_size=kernel_size, mid_chs=mid_chs, act_layer=act_layer)

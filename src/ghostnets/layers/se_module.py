"""Squeeze-and-Excitation as the SENet paper builds it (Hu, Shen, Sun, CVPR 2018, arXiv 1709.01507, Fig. 3):
global average pool -> 1x1 conv to C/r (bias) -> ReLU -> 1x1 conv back to C (bias) -> sigmoid -> scale, r = 16.

Key names ``fc1``/``fc2`` are timm's ``SEModule`` (so timm's ``seresnet50`` files load as they are); GhostNet's
hard-sigmoid variant is :mod:`.squeeze_excite`. The registered block ``se`` is SE-ResNet's bottleneck: ResNet's
bottleneck with SE after ``bn3``, before the residual add (official ``SE-ResNet-50.prototxt``).
"""

from __future__ import annotations

import torch
from torch import nn

from .block_registry import register_block
from .resnet_blocks import Bottleneck, bottleneck_block

SE_RATIO = 1 / 16  # "We set r=16 in all our models" (official README)
SE_DIVISOR = 8  # timm's rd_divisor: C/16 for every ResNet width (16, 32, 64, 128)


def se_width(channels: int, ratio: float = SE_RATIO, divisor: int = SE_DIVISOR) -> int:
    """The squeezed width: ``channels * ratio`` to the nearest multiple of ``divisor``, at least ``divisor``
    (timm's ``make_divisible(channels * rd_ratio, rd_divisor, round_limit=0)``; C/16 on SE-ResNet-50)."""
    if not 0 < ratio <= 1:
        raise ValueError(f"SE ratio must be in (0, 1] (1/r; the paper's r = 16 is 0.0625), got {ratio}")
    return max(divisor, int(channels * ratio + divisor / 2) // divisor * divisor)


class SEModule(nn.Module):
    """avg pool -> ``fc1`` 1x1 conv (bias) -> ReLU -> ``fc2`` 1x1 conv (bias) -> sigmoid -> scale the input."""

    def __init__(self, channels: int, ratio: float = SE_RATIO, divisor: int = SE_DIVISOR) -> None:
        super().__init__()
        reduced = se_width(channels, ratio, divisor)
        self.fc1 = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)  # not in place: x is the caller's tensor


@register_block("se", honours=("kernel_size", "mid_chs", "se_ratio"),
                paper="Hu, Shen, Sun, Squeeze-and-Excitation Networks, CVPR 2018", arxiv="1709.01507",
                example=(16, 64),
                summary="SE-ResNet bottleneck: 1x1 -> kxk (stride) -> 1x1 (4x planes), BN after each, SE (r=16, "
                        "sigmoid) after the last BN, + shortcut")
def se_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3, mid_chs: int | None = None,
             se_ratio: float = SE_RATIO) -> Bottleneck:
    """``se_ratio``: the squeezed width over the block's output width (1/16 in the paper)."""
    se_width(out_chs, se_ratio)  # refuse a bad ratio before building

    def attention(channels: int) -> SEModule:
        return SEModule(channels, se_ratio)

    return bottleneck_block(in_chs, out_chs, stride, kernel_size=kernel_size, mid_chs=mid_chs, attn_layer=attention,
                            attn_name="se")

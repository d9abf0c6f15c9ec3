"""Efficient Channel Attention (Wang, Wu, Zhu, Li, Zuo, Hu, ECA-Net, CVPR 2020, arXiv 1910.03151): global average
pool, a 1-D convolution of kernel k across the channel vector (no bias, no dimensionality reduction), sigmoid, scale.

The official code (BangguWu/ECANet ``eca_module.py``) takes k per stage (``eca_resnet50`` with ``k_size=[3, 5, 5,
7]``); ``kernel_size="adaptive"`` is timm's ``EcaModule`` rule ``t = int(abs(log2(C) + 1) / 2)``, ``k = t`` if odd
else ``t + 1``, at least 3 (the paper's Eq. 12 with gamma 2, b 1). The registered block ``eca`` is ECA-Net's
bottleneck: ResNet's bottleneck with ECA after ``bn3``, before the residual add (``eca_resnet.py``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .block_registry import register_block
from .resnet_blocks import Bottleneck, bottleneck_block

ADAPTIVE = "adaptive"


def eca_kernel_size(channels: int, gamma: float = 2, beta: float = 1) -> int:
    """timm's adaptive kernel size: ``t = int(abs(log2(C) + beta) / gamma)``, odd (``t + 1`` if even), >= 3."""
    t = int(abs(math.log2(channels) + beta) / gamma)
    return max(t if t % 2 else t + 1, 3)


def resolve_kernel_size(channels: int, kernel_size: int | str) -> int:
    """``kernel_size`` as an odd int, or :func:`eca_kernel_size` of ``channels`` for ``"adaptive"``."""
    if kernel_size == ADAPTIVE:
        return eca_kernel_size(channels)
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"ECA kernel_size must be an odd integer >= 1 or {ADAPTIVE!r} (timm's rule), "
                         f"got {kernel_size!r}")
    return kernel_size


class ECAModule(nn.Module):
    """avg pool -> ``conv`` (Conv1d(1, 1, k, bias=False) across channels) -> sigmoid -> scale the input."""

    def __init__(self, channels: int, kernel_size: int | str = ADAPTIVE) -> None:
        super().__init__()
        k = resolve_kernel_size(channels, kernel_size)
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.mean((2, 3)).unsqueeze(1))  # (N, 1, C): channels as the sequence
        return x * torch.sigmoid(y).transpose(1, 2).unsqueeze(-1)  # (N, C, 1, 1)


def eca_layer(kernel_size: int | str = ADAPTIVE):
    """``channels -> ECAModule(channels, kernel_size)``: a Bottleneck's ``attn_layer``."""

    def build(channels: int) -> ECAModule:
        return ECAModule(channels, kernel_size)

    return build


@register_block("eca", honours=("kernel_size", "mid_chs"),
                paper="Wang et al., ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks, "
                      "CVPR 2020", arxiv="1910.03151", example=(16, 64),
                summary="ECA-ResNet bottleneck: 1x1 -> kxk (stride) -> 1x1 (4x planes), BN after each, ECA (1-D conv "
                        "across channels, adaptive k) after the last BN, + shortcut")
def eca_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3,
              mid_chs: int | None = None) -> Bottleneck:
    """``kernel_size`` is the spatial conv's; the ECA kernel follows timm's adaptive rule on ``out_chs``."""
    return bottleneck_block(in_chs, out_chs, stride, kernel_size=kernel_size, mid_chs=mid_chs,
                            attn_layer=eca_layer(ADAPTIVE), attn_name="eca")

"""Squeeze-and-Excitation with the hard-sigmoid gate of MobileNetV3, as GhostNet uses it (Hu et al. 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .channels import make_divisible


class SqueezeExcite(nn.Module):
    """avg pool -> 1x1 conv (bias) -> ReLU -> 1x1 conv (bias) -> relu6(x + 3) / 6 -> scale the input.

    The reduced width is ``make_divisible(channels * se_ratio, 4)`` (GhostNet, arXiv 1911.11907, official code).
    """

    def __init__(self, channels: int, se_ratio: float = 0.25, divisor: int = 4) -> None:
        super().__init__()
        reduced = make_divisible(channels * se_ratio, divisor)
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.conv_expand(self.act1(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * F.hardsigmoid(gate)  # not in place: x is the caller's tensor

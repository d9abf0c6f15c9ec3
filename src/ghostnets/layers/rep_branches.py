"""Parallel conv+BN branches that sum into one conv at inference: MobileOne-style structural re-parameterization.

GhostNetV3 (Liu et al., arXiv 2404.11202, Sec. 3.2; docs/reference.md "GhostNetV3") trains each conv of the Ghost
module as ``n`` parallel k x k conv+BN branches, plus a 1x1 "scale" conv+BN branch for k > 1 and a BatchNorm
"identity" branch where input and output match; all of them are linear, so in eval mode they add up to one biased
k x k conv (RepVGG, Ding et al. 2021; MobileOne, Vasu et al. 2023).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conv_bn_act import batchnorm_scale_shift, is_identity
from .deploy_conv import DeployConv2d


class ConvBn(nn.Module):
    """One branch: ``conv`` (no bias) then ``bn1`` (timm's ``ConvBnAct`` keys; the official files say ``bn``)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, *, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn1(self.conv(x))

    def kernel_bias(self, kernel_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The branch as one biased conv of ``kernel_size`` (a smaller kernel is zero-padded around its centre)."""
        scale, shift = batchnorm_scale_shift(self.bn1)
        pad = (kernel_size - self.conv.kernel_size[0]) // 2
        return F.pad(self.conv.weight, [pad] * 4) * scale.reshape(-1, 1, 1, 1), shift


def conv_branches(n: int, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, *,
                  groups: int = 1) -> nn.ModuleList:
    """``n`` parallel k x k conv+BN branches of the same geometry (GhostNetV3's ``*_rpr_conv``)."""
    return nn.ModuleList(ConvBn(in_chs, out_chs, kernel_size, stride, groups=groups) for _ in range(n))


def identity_kernel(channels: int, groups: int, kernel_size: int, like: torch.Tensor) -> torch.Tensor:
    """The k x k kernel of a (grouped) conv that copies its input: a 1 at each channel's centre tap."""
    per_group = channels // groups
    kernel = torch.zeros(channels, per_group, kernel_size, kernel_size, dtype=like.dtype, device=like.device)
    centre = kernel_size // 2
    kernel[torch.arange(channels), torch.arange(channels) % per_group, centre, centre] = 1.0
    return kernel


def sum_branches(x: torch.Tensor, convs: nn.ModuleList, scale: nn.Module | None = None,
                 skip: nn.Module | None = None) -> torch.Tensor:
    """Training-form forward: every branch applied to ``x`` and added up."""
    out = convs[0](x)
    for branch in [*convs[1:], scale, skip]:
        if not is_identity(branch):
            out = out + branch(x)
    return out


@torch.no_grad()
def fuse_branches(convs: nn.ModuleList, scale: ConvBn | None = None,
                  skip: nn.BatchNorm2d | None = None) -> DeployConv2d:
    """One biased conv equal (in eval mode) to :func:`sum_branches` over the same branches."""
    template = convs[0].conv
    k = template.kernel_size[0]
    weight = torch.zeros_like(template.weight)
    bias = torch.zeros(template.out_channels, dtype=weight.dtype, device=weight.device)
    for branch in [*convs, scale]:
        if branch is not None and not is_identity(branch):
            w, b = branch.kernel_bias(k)
            weight += w
            bias += b
    if not is_identity(skip):
        s, b = batchnorm_scale_shift(skip)
        weight += identity_kernel(template.out_channels, template.groups, k, weight) * s.reshape(-1, 1, 1, 1)
        bias += b
    fused = DeployConv2d(template.in_channels, template.out_channels, template.kernel_size, template.stride,
                         template.padding, template.dilation, template.groups, bias=True).to(weight)
    fused.weight.copy_(weight)
    fused.bias.copy_(bias)
    return fused

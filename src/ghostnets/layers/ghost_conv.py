"""The Ghost module as a drop-in ``nn.Conv2d`` replacement (Han et al., GhostNet, CVPR 2020, arXiv 1911.11907, §4.1).

A k x k primary conv makes ``ceil(out / s)`` intrinsic maps with the replaced conv's stride, padding and dilation; a
d x d depthwise conv (stride 1) makes the ghosts; the output is ``concat(intrinsic, ghosts)[:, :out]``. Linear, like
the conv it replaces: the model's own BatchNorm and activation after it stay where they were (REFERENCE.md §7).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .conv_bn_act import ConvSequence, fold_bn


class GhostConv2d(nn.Module):
    """``GhostConv2d(in, out, kernel_size, stride, padding, dilation, bias, ratio=s, dw_size=d, norm=True)``.

    ``norm=True`` puts a BatchNorm after the primary and after the cheap conv, as the paper's module has; with
    ``norm=False`` both are bare convs (biased when the replaced conv was). In deploy form the inner BatchNorms are
    folded, and a BatchNorm that followed the module is absorbed too (:meth:`absorb_batchnorm`): into the cheap conv
    for the ghosts and as a per-channel scale and shift (``intrinsic_scale``/``intrinsic_shift``) for the intrinsic
    maps, which the cheap conv still reads unscaled.
    """

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int | tuple[int, int] = 1, stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0, dilation: int | tuple[int, int] = 1, bias: bool = False, *,
        ratio: int = 2, dw_size: int = 3, norm: bool = True, padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 2:
            raise ValueError(f"Ghost ratio s must be an integer >= 2, got {ratio!r}")
        if isinstance(dw_size, bool) or not isinstance(dw_size, int) or dw_size < 1 or dw_size % 2 == 0:
            raise ValueError(f"the cheap operation's kernel d (dw_size) must be an odd integer >= 1, got {dw_size!r}")
        self.in_channels, self.out_channels, self.ratio, self.dw_size = in_chs, out_chs, ratio, dw_size
        init_chs = math.ceil(out_chs / ratio)
        self.init_channels = init_chs
        self.trim = init_chs * ratio != out_chs
        conv_bias = bias and not norm
        primary = nn.Conv2d(in_chs, init_chs, kernel_size, stride, padding, dilation, bias=conv_bias,
                            padding_mode=padding_mode)
        cheap = nn.Conv2d(init_chs, init_chs * (ratio - 1), dw_size, 1, dw_size // 2, groups=init_chs,
                          bias=conv_bias)
        if norm:
            self.primary_conv = ConvSequence(primary, nn.BatchNorm2d(init_chs))
            self.cheap_operation = ConvSequence(cheap, nn.BatchNorm2d(init_chs * (ratio - 1)))
        else:
            self.primary_conv, self.cheap_operation = ConvSequence(primary), ConvSequence(cheap)
        self.register_buffer("intrinsic_scale", None)
        self.register_buffer("intrinsic_shift", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        ghosts = self.cheap_operation(x1)
        if self.intrinsic_scale is not None:
            x1 = torch.addcmul(self.intrinsic_shift.view(1, -1, 1, 1), x1, self.intrinsic_scale.view(1, -1, 1, 1))
        out = torch.cat([x1, ghosts], dim=1)
        if self.trim:
            out = out[:, : self.out_channels]
        return out

    def fuse(self) -> GhostConv2d:
        """Fold the inner BatchNorms (in place; ``reparameterize`` works on a copy)."""
        self.primary_conv = self.primary_conv.fuse()
        self.cheap_operation = self.cheap_operation.fuse()
        return self

    @torch.no_grad()
    def absorb_batchnorm(self, bn: nn.BatchNorm2d) -> GhostConv2d:
        """Return this module with ``bn`` (applied to its output) folded in: the same function in eval mode."""
        self.fuse()
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        init, n_ghosts = self.init_channels, self.out_channels - self.init_channels
        cheap = self.cheap_operation[0]
        pad = cheap.out_channels - n_ghosts  # trimmed ghosts: never seen, keep them as they are
        ones, zeros = torch.ones_like(scale[:1]).expand(pad), torch.zeros_like(shift[:1]).expand(pad)
        ghost_bn = _affine_as_batchnorm(torch.cat([scale[init:], ones]), torch.cat([shift[init:], zeros]))
        self.cheap_operation[0] = fold_bn(cheap, ghost_bn)
        old_scale = self.intrinsic_scale if self.intrinsic_scale is not None else torch.ones_like(scale[:init])
        old_shift = self.intrinsic_shift if self.intrinsic_shift is not None else torch.zeros_like(shift[:init])
        self.intrinsic_scale = old_scale * scale[:init]
        self.intrinsic_shift = old_shift * scale[:init] + shift[:init]
        return self

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, ratio={self.ratio}, dw_size={self.dw_size}"


def _affine_as_batchnorm(scale: torch.Tensor, shift: torch.Tensor) -> nn.BatchNorm2d:
    """An eval-mode BatchNorm computing ``x * scale + shift`` (so :func:`fold_bn` can fold any per-channel affine)."""
    bn = nn.BatchNorm2d(scale.numel(), eps=0.0).to(scale)
    bn.weight.copy_(scale)
    bn.bias.copy_(shift)
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0)
    return bn.eval()


"""The pre-activation wide basic block of Wide Residual Networks (Zagoruyko & Komodakis, BMVC 2016, arXiv 1605.07146;
szagoruyko/wide-residual-networks ``pytorch/resnet.py``), registered as ``wide_basic``.

``o1 = relu(bn1(x))`` -> conv1 kxk (stride) -> relu(bn2) -> dropout (between the convs, Sec. 2.3) -> conv2 kxk;
the shortcut is a 1x1 conv applied to ``o1`` (the pre-activated input) when the width or the size changes, else ``x``
itself; no ReLU after the add; every conv without bias (He et al.'s pre-activation order, arXiv 1603.05027).

Deploy form: ``bn2`` follows ``conv1`` and folds into it. ``bn1`` cannot fold into any conv exactly: it acts on the
residual sum ``x`` of the block before, which also feeds this block's identity shortcut (and ``bn2`` of the block
before sees only one of the two summands), so it stays, as the per-channel affine it is in eval mode:
:class:`ChannelAffine` (no BatchNorm is left, and running statistics can no longer change). The network folds the
first block's ``bn1`` into the stem conv, where ``x`` feeds nothing else (models/wrn_cifar.py).
"""

from __future__ import annotations

import torch
from torch import nn

from .block_registry import register_block
from .conv_bn_act import (
    ActFactory,
    activation,
    batchnorm_scale_shift,
    can_update_in_place,
    fold_named_pairs,
    is_identity,
)
from .deploy_conv import DeployConv2d, fuse_relu
from .drop_path import DropPath


class ChannelAffine(nn.Module):
    """``x * weight + bias`` per channel: an eval-mode BatchNorm that no conv can absorb (``weight``/``bias`` of
    shape ``(C,)``, as a BatchNorm's)."""

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d) -> ChannelAffine:
        """The affine ``bn`` computes in eval mode (running statistics, eps and its own weight/bias folded)."""
        affine = cls(bn.num_features).to(device=bn.running_mean.device, dtype=bn.running_mean.dtype)
        with torch.no_grad():
            scale, shift = batchnorm_scale_shift(bn)
            affine.weight.copy_(scale)
            affine.bias.copy_(shift)
        return affine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x, self.weight.view(1, -1, 1, 1))


def pre_activation_norm(num_channels: int, deploy: bool) -> nn.Module:
    """A BatchNorm on a residual sum: ``BatchNorm2d`` in training form, :class:`ChannelAffine` in deploy form."""
    return ChannelAffine(num_channels) if deploy else nn.BatchNorm2d(num_channels)


def to_affine(norm: nn.Module) -> nn.Module:
    """``norm`` in deploy form: a BatchNorm becomes its :class:`ChannelAffine`; anything else is kept."""
    return ChannelAffine.from_batchnorm(norm) if isinstance(norm, nn.BatchNorm2d) else norm


class WideBasic(nn.Module):
    """The WRN pre-activation basic block: ``bn1, act1, conv1, bn2, act2, drop, conv2`` and ``shortcut`` (1x1 conv on
    the pre-activated input, or ``None`` for the identity), in pytorchcv's ``PreResUnit`` parameter order."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3, dropout: float = 0.0,
                 act_layer: ActFactory = nn.ReLU, drop_path: float = 0.0, deploy: bool = False) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"a wide basic block takes stride 1 or 2, got {stride}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (padding k // 2 keeps the size), got {kernel_size}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout (between the two convs, WRN Sec. 2.3) must be in [0, 1), got {dropout}")
        if min(in_chs, out_chs) < 1:
            raise ValueError(f"in_chs and out_chs must be >= 1, got {in_chs}, {out_chs}")
        self.in_chs, self.out_chs, self.stride = in_chs, out_chs, stride
        pad = kernel_size // 2
        self.bn1 = pre_activation_norm(in_chs, deploy)
        self.act1 = act_layer()  # not in place: with bn1 folded away it would overwrite the block's input
        conv1 = DeployConv2d if deploy else nn.Conv2d
        self.conv1 = conv1(in_chs, out_chs, kernel_size, stride, pad, bias=deploy)
        self.bn2 = nn.Identity() if deploy else nn.BatchNorm2d(out_chs)
        self.act2 = activation(act_layer)
        if deploy:
            self.conv1, self.act2 = fuse_relu(self.conv1, self.act2)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_chs, out_chs, kernel_size, 1, pad, bias=False)
        same = stride == 1 and in_chs == out_chs
        self.shortcut = None if same else nn.Conv2d(in_chs, out_chs, 1, stride, 0, bias=False)
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o1 = self.act1(x if is_identity(self.bn1) else self.bn1(x))
        out = self.conv1(o1)
        if not is_identity(self.bn2):
            out = self.bn2(out)
        if not is_identity(self.act2):
            out = self.act2(out)
        out = self.conv2(self.drop(out))
        if not is_identity(self.drop_path):
            out = self.drop_path(out)
        shortcut = x if self.shortcut is None else self.shortcut(o1)
        return out.add_(shortcut) if can_update_in_place(out) else out + shortcut

    def fuse(self) -> WideBasic:
        """Fold ``bn2`` into ``conv1`` (and the ReLU after it); ``bn1`` becomes its :class:`ChannelAffine`."""
        fold_named_pairs(self, [("conv1", "bn2")])
        self.conv1, self.act2 = fuse_relu(self.conv1, self.act2)
        self.bn1 = to_affine(self.bn1)
        return self


@register_block("wide_basic", honours=("kernel_size", "act_layer"),
                paper="Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016", arxiv="1605.07146",
                summary="pre-activation basic block: BN-ReLU, kxk conv (stride), BN-ReLU, [dropout], kxk conv, "
                        "+ identity or 1x1 conv of the pre-activated input")
def wide_basic_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3,
                     act_layer: ActFactory = nn.ReLU) -> nn.Module:
    return WideBasic(in_chs, out_chs, stride, kernel_size=kernel_size, act_layer=act_layer)

"""Convolution + BatchNorm (+ activation) and the BatchNorm folding every deploy form relies on.

Training form: ``Conv2d(bias=False)`` followed by ``BatchNorm2d``. Deploy form: one ``Conv2d(bias=True)`` with the
BatchNorm folded in and ``nn.Identity`` where the norm was, so the official state-dict indices stay put.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from .deploy_conv import DeployConv2d, fuse_relu

ActFactory = Callable[..., nn.Module]


def absorbs_batchnorm(module: nn.Module) -> bool:
    """True for a module a following BatchNorm folds into: a ``Conv2d``, or a linear one with ``absorb_batchnorm``."""
    if isinstance(module, nn.Conv2d):
        return True
    return callable(getattr(module, "absorb_batchnorm", None)) and getattr(module, "linear", True)


def batchnorm_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` with ``bn(x) = x * scale + shift`` per channel in eval mode (Ioffe & Szegedy 2015)."""
    weight = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    bias = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    scale = weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bias - bn.running_mean * scale


def fold_affine(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> DeployConv2d:
    """A new biased conv computing ``conv(x) * scale + shift`` per output channel: every BatchNorm fold is this."""
    fused = DeployConv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        conv.groups, bias=True, padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_(bias * scale + shift)
    return fused


def fold_bn(conv: nn.Module, bn: nn.BatchNorm2d) -> nn.Module:
    """Return a new biased conv equal to ``bn(conv(x))`` in eval mode.

    A module that is not a ``Conv2d`` but has ``absorb_batchnorm(bn)`` (the drop-in Ghost module) folds itself.
    """
    if not isinstance(conv, nn.Conv2d):
        return conv.absorb_batchnorm(bn)
    with torch.no_grad():
        return fold_affine(conv, *batchnorm_scale_shift(bn))


def init_conv_weights(module: nn.Module) -> None:
    """He (fan-out) initialisation of every conv in ``module``, zero biases: the official GhostNet/ResNet init."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def fuse_tree(module: nn.Module) -> nn.Module:
    """Call every ``fuse()`` in ``module``'s tree, children before parents, in place; returns the fused root."""
    for name, child in list(module.named_children()):
        fused = fuse_tree(child)
        if fused is not child:
            setattr(module, name, fused)
    fuse = getattr(module, "fuse", None)
    return fuse() if callable(fuse) else module


def fold_named_pairs(module: nn.Module, pairs: Iterable[tuple[str, str]]) -> nn.Module:
    """Fold each ``(conv_attr, bn_attr)`` BatchNorm of ``module`` into its conv, leaving ``nn.Identity`` behind."""
    for conv_name, bn_name in pairs:
        bn = getattr(module, bn_name)
        if isinstance(bn, nn.BatchNorm2d) and absorbs_batchnorm(getattr(module, conv_name)):
            setattr(module, conv_name, fold_bn(getattr(module, conv_name), bn))
            setattr(module, bn_name, nn.Identity())
    return module


def conv_norm(
    in_chs: int, out_chs: int, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] = 1, *,
    groups: int = 1, padding: int | tuple[int, int] | str | None = None, dilation: int | tuple[int, int] = 1,
    padding_mode: str = "zeros", norm: bool = True, bias: bool = False, deploy: bool = False,
) -> list[nn.Module]:
    """``[Conv2d, BatchNorm2d]`` in training form, ``[DeployConv2d(bias=True), Identity]`` in deploy form.

    ``padding`` defaults to ``kernel_size // 2`` ("same" for odd kernels). ``norm=False``: one bare conv
    (``bias`` as asked), the same in both forms.
    """
    if padding is None:
        padding = tuple(k // 2 for k in kernel_size) if isinstance(kernel_size, tuple) else kernel_size // 2
    geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode)
    if not norm:
        return [nn.Conv2d(in_chs, out_chs, kernel_size, bias=bias, **geometry)]
    if deploy:
        return [DeployConv2d(in_chs, out_chs, kernel_size, bias=True, **geometry), nn.Identity()]
    return [nn.Conv2d(in_chs, out_chs, kernel_size, bias=False, **geometry), nn.BatchNorm2d(out_chs)]


def is_identity(module: nn.Module | None) -> bool:
    """True for an empty slot (``None`` or ``nn.Identity``) that the forward pass may skip without a call."""
    return module is None or type(module) is nn.Identity


def can_update_in_place(t: torch.Tensor) -> bool:
    """True when ``t`` (a tensor this module made) may be overwritten: no autograd graph needs it."""
    return not (torch.is_grad_enabled() and t.requires_grad)


def activation(act_layer: ActFactory | None) -> nn.Module:
    """An activation module, or ``nn.Identity`` for none (keeps the official indices)."""
    if act_layer is None:
        return nn.Identity()
    try:
        return act_layer(inplace=True)
    except TypeError:
        return act_layer()


class ConvSequence(nn.Sequential):
    """A ``nn.Sequential`` of convs, norms and activations; ``fuse()`` folds each BatchNorm into the conv before it.

    Used wherever the official code has ``nn.Sequential(conv, bn, ...)`` (Ghost primary/cheap convs, DFC branch,
    shortcuts), so the keys stay ``<name>.0.weight``, ``<name>.1.running_mean``, ...
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self:
            if not is_identity(module):  # the slots a fold left behind would cost a Python call each
                x = module(x)
        return x

    def fuse(self) -> ConvSequence:
        """Fold in place (``reparameterize`` works on a copy) and return ``self``."""
        for i in range(1, len(self)):
            if isinstance(self[i], nn.BatchNorm2d) and absorbs_batchnorm(self[i - 1]):
                self[i - 1], self[i] = fold_bn(self[i - 1], self[i]), nn.Identity()
        return self.fuse_relus()

    def fuse_relus(self) -> ConvSequence:
        """Fuse each ReLU that follows a deploy conv (past the Identity left by its BatchNorm) into that conv."""
        for i in range(len(self) - 2):
            if isinstance(self[i + 1], nn.Identity):
                self[i], self[i + 2] = fuse_relu(self[i], self[i + 2])
        return self


def conv_bn_act(
    in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, *, groups: int = 1,
    act_layer: ActFactory | None = nn.ReLU, deploy: bool = False,
) -> ConvSequence:
    """``ConvSequence(conv, bn, act)``: the ``[0, 1, 2]`` layout of the official Ghost modules."""
    seq = ConvSequence(
        *conv_norm(in_chs, out_chs, kernel_size, stride, groups=groups, deploy=deploy), activation(act_layer)
    )
    return seq.fuse_relus() if deploy else seq


class ConvBnAct(nn.Module):
    """Conv + BN + activation with the official attribute names ``conv``, ``bn1``, ``act1`` (the last 1x1 stage)."""

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, *,
        act_layer: ActFactory | None = nn.ReLU, deploy: bool = False,
    ) -> None:
        super().__init__()
        self.conv, self.bn1 = conv_norm(in_chs, out_chs, kernel_size, stride, deploy=deploy)
        self.conv, self.act1 = fuse_relu(self.conv, activation(act_layer))
        self.out_chs = out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if not is_identity(self.bn1):
            x = self.bn1(x)
        return x if is_identity(self.act1) else self.act1(x)

    def fuse(self) -> ConvBnAct:
        fold_named_pairs(self, [("conv", "bn1")])
        self.conv, self.act1 = fuse_relu(self.conv, self.act1)
        return self

"""The Ghost module and the Ghost bottleneck (Han et al., CVPR 2020, arXiv 1911.11907, Sec. 3.1-3.2, 4.1, Fig. 2-3)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from .conv_bn_act import (
    ActFactory,
    ConvSequence,
    activation,
    batchnorm_scale_shift,
    can_update_in_place,
    conv_norm,
    fold_affine,
    fold_named_pairs,
    is_identity,
)
from .dfc import DFCAttention
from .drop_path import DropPath
from .squeeze_excite import SqueezeExcite


def check_ghost_ratio(ratio: object, dw_size: object) -> None:
    """The Ghost module's two hyper-parameters: an integer ratio s >= 2 and an odd cheap kernel d >= 1."""
    if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 2:
        raise ValueError(f"Ghost ratio s must be an integer >= 2 (s=2 halves a conv's cost), got {ratio!r}")
    if isinstance(dw_size, bool) or not isinstance(dw_size, int) or dw_size < 1 or dw_size % 2 == 0:
        raise ValueError(f"the cheap operation's kernel d (dw_size) must be an odd integer >= 1 (the paper uses 3), "
                         f"got {dw_size!r}")


def concat_ghosts(module: nn.Module, x: torch.Tensor, x1: torch.Tensor, ghosts: torch.Tensor) -> torch.Tensor:
    """concat(intrinsic, ghosts)[:, :out] (eq. 3), gated by the DFC attention of the module input ``x`` where the
    module has one (GhostNetV2); shared by the V1/V2 and V3 modules (``trim``, ``out_channels``, ``short_conv``)."""
    out = torch.cat([x1, ghosts], dim=1)
    if module.trim:
        out = out[:, : module.out_channels]
    if module.short_conv is not None:
        gate = module.short_conv(x, out.shape[-2:])
        out = out.mul_(gate) if can_update_in_place(out) else out * gate
    return out


class GhostModule(nn.Module):
    """A primary conv makes ``ceil(out / ratio)`` intrinsic maps; a cheap depthwise ``dw_size`` conv makes the ghosts.

    Output = concat(intrinsic, ghosts)[:, :out] (eq. 3 of the paper). Two uses, one class:

    - inside GhostNet's bottleneck (``act_layer=nn.ReLU`` or ``None``): 1x1 primary, BN and the activation after
      both convs (``primary_conv``/``cheap_operation`` = ``[conv, bn, act]``, the official keys); ``use_dfc`` adds
      GhostNetV2's DFC attention computed from the module input (``short_conv``);
    - as a drop-in ``nn.Conv2d`` (Sec. 4.1; ``ghostify``, the Ghost-ResNet/VGG): ``GhostModule(in, out,
      kernel_size, stride, padding, dilation, bias)`` keeps the replaced conv's kernel, stride, padding and
      dilation on the primary conv; linear (no activation), so the model's own BN and ReLU after it stay where they
      were. ``norm=False`` makes both convs bare (biased when the replaced conv was).

    In deploy form the inner BatchNorms are folded, and a BatchNorm that followed a linear module is absorbed too
    (:meth:`absorb_batchnorm`): into the cheap conv for the ghosts and as a per-channel scale and shift
    (``intrinsic_scale``/``intrinsic_shift``) for the intrinsic maps, which the cheap conv still reads unscaled.
    """

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int | tuple[int, int] = 1, stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str | None = None, dilation: int | tuple[int, int] = 1, bias: bool = False,
        *, ratio: int = 2, dw_size: int = 3, act_layer: ActFactory | None = None, norm: bool = True,
        use_dfc: bool = False, padding_mode: str = "zeros", deploy: bool = False,
    ) -> None:
        super().__init__()
        check_ghost_ratio(ratio, dw_size)
        self.in_channels, self.out_channels, self.ratio, self.dw_size = in_chs, out_chs, ratio, dw_size
        init_chs = math.ceil(out_chs / ratio)
        self.init_channels = init_chs
        self.trim = init_chs * ratio != out_chs  # concat is wider than asked: keep the first out_chs
        conv_args = dict(norm=norm, bias=bias, deploy=deploy)
        self.primary_conv = ConvSequence(
            *conv_norm(in_chs, init_chs, kernel_size, stride, padding=padding, dilation=dilation,
                       padding_mode=padding_mode, **conv_args), activation(act_layer))
        self.cheap_operation = ConvSequence(
            *conv_norm(init_chs, init_chs * (ratio - 1), dw_size, groups=init_chs, **conv_args), activation(act_layer))
        if deploy:
            self.primary_conv.fuse_relus()
            self.cheap_operation.fuse_relus()
        self.short_conv = DFCAttention(in_chs, out_chs, kernel_size, stride, deploy=deploy) if use_dfc else None
        self.linear = act_layer is None and not use_dfc  # a BatchNorm after it can be absorbed
        self.register_buffer("intrinsic_scale", None)
        self.register_buffer("intrinsic_shift", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        ghosts = self.cheap_operation(x1)
        if self.intrinsic_scale is not None:
            x1 = torch.addcmul(self.intrinsic_shift.view(1, -1, 1, 1), x1, self.intrinsic_scale.view(1, -1, 1, 1))
        return concat_ghosts(self, x, x1, ghosts)

    def fuse(self) -> GhostModule:
        """Fold the inner BatchNorms (in place; ``reparameterize`` works on a copy)."""
        self.primary_conv = self.primary_conv.fuse()
        self.cheap_operation = self.cheap_operation.fuse()
        return self

    @torch.no_grad()
    def absorb_batchnorm(self, bn: nn.BatchNorm2d) -> GhostModule:
        """Return this module with ``bn`` (applied to its output) folded in: the same function in eval mode."""
        if not self.linear:
            raise TypeError("a BatchNorm after a Ghost module with an activation or DFC attention cannot be folded")
        self.fuse()
        scale, shift = batchnorm_scale_shift(bn)
        init, n_ghosts = self.init_channels, self.out_channels - self.init_channels
        cheap = self.cheap_operation[0]
        pad = cheap.out_channels - n_ghosts  # trimmed ghosts: never seen, keep them as they are
        ones, zeros = torch.ones_like(scale[:1]).expand(pad), torch.zeros_like(shift[:1]).expand(pad)
        self.cheap_operation[0] = fold_affine(cheap, torch.cat([scale[init:], ones]), torch.cat([shift[init:], zeros]))
        old_scale = self.intrinsic_scale if self.intrinsic_scale is not None else torch.ones_like(scale[:init])
        old_shift = self.intrinsic_shift if self.intrinsic_shift is not None else torch.zeros_like(shift[:init])
        self.intrinsic_scale = old_scale * scale[:init]
        self.intrinsic_shift = old_shift * scale[:init] + shift[:init]
        return self

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, ratio={self.ratio}, dw_size={self.dw_size}"


def ghost_or_plain_conv(ghost_ratio: int | None, dw_size: int = 3) -> Callable[..., nn.Module]:
    """``nn.Conv2d`` for a baseline, or the drop-in Ghost module at ratio s taking its place (paper Sec. 4.1)."""
    return nn.Conv2d if ghost_ratio is None else partial(GhostModule, ratio=ghost_ratio, dw_size=dw_size)


GhostLayerFactory = Callable[..., nn.Module]


class GhostBottleneck(nn.Module):
    """ghost1 (expand, ReLU) -> [stride 2: depthwise conv_dw + bn_dw] -> [SE] -> ghost2 (project, linear) -> + shortcut.

    The shortcut is the identity when shapes allow, else depthwise k x k (stride s) + BN + 1x1 + BN (paper Fig. 3).
    ``expand_layer`` / ``project_layer`` build ghost1 / ghost2, so GhostNetV2 (DFC on ghost1) and RepGhostNet
    (RepGhost modules) reuse this block. ``use_shortcut=False`` drops an identity shortcut (RepGhost ablation).
    """

    def __init__(
        self, in_chs: int, mid_chs: int, out_chs: int, dw_kernel_size: int = 3, stride: int = 1, *,
        se_ratio: float = 0.0, expand_layer: GhostLayerFactory = GhostModule,
        project_layer: GhostLayerFactory | None = None, use_shortcut: bool = True, drop_path: float = 0.0,
        deploy: bool = False,
    ) -> None:
        super().__init__()
        project_layer = project_layer or expand_layer
        self.ghost1 = expand_layer(in_chs, mid_chs, act_layer=nn.ReLU, deploy=deploy)
        if stride > 1:
            self.conv_dw, self.bn_dw = conv_norm(
                mid_chs, mid_chs, dw_kernel_size, stride, groups=mid_chs, deploy=deploy
            )
        else:
            self.conv_dw = self.bn_dw = None
        self.se = SqueezeExcite(mid_chs, se_ratio) if se_ratio else None
        self.ghost2 = project_layer(mid_chs, out_chs, act_layer=None, deploy=deploy)
        identity = in_chs == out_chs and stride == 1
        if identity:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = ConvSequence(
                *conv_norm(in_chs, in_chs, dw_kernel_size, stride, groups=in_chs, deploy=deploy),
                *conv_norm(in_chs, out_chs, 1, deploy=deploy),
            )
        self.has_residual = use_shortcut or not identity
        self.drop_path = DropPath(drop_path) if drop_path and identity and use_shortcut else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.depthwise(self.ghost1(x))
        if self.se is not None:
            x = self.se(x)
        x = self.ghost2(x)
        if self.has_residual:
            if not is_identity(self.drop_path):
                x = self.drop_path(x)
            shortcut = shortcut if is_identity(self.shortcut) else self.shortcut(shortcut)
            x = x.add_(shortcut) if can_update_in_place(x) else x + shortcut
        return x

    def depthwise(self, x: torch.Tensor) -> torch.Tensor:
        """The stride-2 depthwise conv + BN between the Ghost modules (the identity at stride 1)."""
        if self.conv_dw is None:
            return x
        x = self.conv_dw(x)
        return x if is_identity(self.bn_dw) else self.bn_dw(x)

    def fuse(self) -> GhostBottleneck:
        return fold_named_pairs(self, [("conv_dw", "bn_dw")])

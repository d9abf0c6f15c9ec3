"""The Ghost module and the Ghost bottleneck (Han et al., CVPR 2020, arXiv 1911.11907, Sec. 3.1-3.2, Fig. 2-3)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .conv_bn_act import (
    ActFactory,
    ConvSequence,
    can_update_in_place,
    conv_bn_act,
    conv_norm,
    fold_named_pairs,
    is_identity,
)
from .dfc import DFCAttention
from .drop_path import DropPath
from .squeeze_excite import SqueezeExcite


class GhostModule(nn.Module):
    """A primary conv makes ``ceil(out / ratio)`` intrinsic maps; a cheap depthwise ``dw_size`` conv makes the ghosts.

    Output = concat(intrinsic, ghosts)[:, :out] (eq. 3 of the paper). With ``use_dfc`` the output is multiplied by
    GhostNetV2's DFC attention computed from the module input (``short_conv``).
    """

    def __init__(
        self, in_chs: int, out_chs: int, *, kernel_size: int = 1, ratio: int = 2, dw_size: int = 3, stride: int = 1,
        act_layer: ActFactory | None = nn.ReLU, use_dfc: bool = False, deploy: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(ratio, int) or ratio < 2:
            raise ValueError(f"Ghost ratio s must be an integer >= 2, got {ratio!r}")
        self.out_chs = out_chs
        init_chs = math.ceil(out_chs / ratio)
        self.trim = init_chs * ratio != out_chs  # concat is wider than asked: keep the first out_chs
        self.primary_conv = conv_bn_act(in_chs, init_chs, kernel_size, stride, act_layer=act_layer, deploy=deploy)
        self.cheap_operation = conv_bn_act(
            init_chs, init_chs * (ratio - 1), dw_size, groups=init_chs, act_layer=act_layer, deploy=deploy
        )
        self.short_conv = DFCAttention(in_chs, out_chs, kernel_size, stride, deploy=deploy) if use_dfc else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        out = torch.cat([x1, self.cheap_operation(x1)], dim=1)
        if self.trim:
            out = out[:, : self.out_chs]
        if self.short_conv is not None:
            gate = self.short_conv(x, out.shape[-2:])
            out = out.mul_(gate) if can_update_in_place(out) else out * gate
        return out


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
        x = self.ghost1(x)
        if self.conv_dw is not None:
            x = self.conv_dw(x)
            if not is_identity(self.bn_dw):
                x = self.bn_dw(x)
        if self.se is not None:
            x = self.se(x)
        x = self.ghost2(x)
        if self.has_residual:
            if not is_identity(self.drop_path):
                x = self.drop_path(x)
            shortcut = shortcut if is_identity(self.shortcut) else self.shortcut(shortcut)
            x = x.add_(shortcut) if can_update_in_place(x) else x + shortcut
        return x

    def fuse(self) -> GhostBottleneck:
        return fold_named_pairs(self, [("conv_dw", "bn_dw")])

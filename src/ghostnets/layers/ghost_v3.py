"""GhostNetV3's Ghost module and bottleneck in training form (Liu et al., "GhostNetV3: Exploring the Training
Strategies for Compact Models", arXiv 2404.11202, Sec. 3.2, Fig. 2; docs/reference.md "GhostNetV3").

Every conv of the GhostNetV2 block is trained as re-parameterizable branches (:mod:`.rep_branches`): the primary
1x1 conv, the cheap depthwise 3x3 conv and the stride-2 depthwise conv each as ``num_branches`` parallel conv+BN
branches, a 1x1 "scale" conv+BN branch beside every k x k > 1 conv, and a BatchNorm identity branch where input and
output match. ``fuse()`` sums them into the GhostNetV2 deploy form: the deployed network *is* GhostNetV2.
Attribute names are the official ones (``primary_rpr_conv``, ``cheap_rpr_scale``, ``dw_rpr_conv``, ...), so timm's
state dicts load as they are and the official files after renaming their inner ``bn`` to timm's ``bn1``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .conv_bn_act import ActFactory, activation, is_identity
from .dfc import DFCAttention
from .ghost import GhostBottleneck, GhostModule, check_ghost_ratio, concat_ghosts
from .rep_branches import ConvBn, conv_branches, fuse_branches, sum_branches

NUM_BRANCHES = 3  # the official ``num_conv_branches``


class GhostModuleV3(nn.Module):
    """x1 = act(sum of primary branches(x)); ghosts = act(sum of cheap branches(x1)); out = concat(x1, ghosts).

    With ``use_dfc`` the output is gated by GhostNetV2's DFC attention computed from the module input (not
    re-parameterized; its BatchNorms fold like V2's). :meth:`fuse` returns the equivalent deploy-form
    :class:`GhostModule`.
    """

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, *, ratio: int = 2, dw_size: int = 3,
        act_layer: ActFactory | None = nn.ReLU, use_dfc: bool = False, num_branches: int = NUM_BRANCHES,
    ) -> None:
        super().__init__()
        check_ghost_ratio(ratio, dw_size)
        if isinstance(num_branches, bool) or not isinstance(num_branches, int) or num_branches < 1:
            raise ValueError(f"num_branches must be an integer >= 1 (the paper trains 3), got {num_branches!r}")
        self.in_channels, self.out_channels, self.ratio, self.dw_size = in_chs, out_chs, ratio, dw_size
        self.kernel_size, self.stride, self.act_layer = kernel_size, stride, act_layer
        init_chs = math.ceil(out_chs / ratio)
        new_chs = init_chs * (ratio - 1)
        self.init_channels = init_chs
        self.trim = init_chs * ratio != out_chs
        # the official conditions for the identity and scale branches
        self.primary_rpr_skip = nn.BatchNorm2d(in_chs) if in_chs == init_chs and stride == 1 else None
        self.primary_rpr_conv = conv_branches(num_branches, in_chs, init_chs, kernel_size, stride)
        self.primary_rpr_scale = ConvBn(in_chs, init_chs, 1, stride) if kernel_size > 1 else None
        self.primary_activation = activation(act_layer)
        self.cheap_rpr_skip = nn.BatchNorm2d(init_chs) if init_chs == new_chs else None
        self.cheap_rpr_conv = conv_branches(num_branches, init_chs, new_chs, dw_size, groups=init_chs)
        self.cheap_rpr_scale = ConvBn(init_chs, new_chs, 1, groups=init_chs) if dw_size > 1 else None
        self.cheap_activation = activation(act_layer)
        self.short_conv = DFCAttention(in_chs, out_chs, kernel_size, stride) if use_dfc else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = sum_branches(x, self.primary_rpr_conv, self.primary_rpr_scale, self.primary_rpr_skip)
        if not is_identity(self.primary_activation):
            x1 = self.primary_activation(x1)
        ghosts = sum_branches(x1, self.cheap_rpr_conv, self.cheap_rpr_scale, self.cheap_rpr_skip)
        if not is_identity(self.cheap_activation):
            ghosts = self.cheap_activation(ghosts)
        return concat_ghosts(self, x, x1, ghosts)

    @torch.no_grad()
    def fuse(self) -> GhostModule:
        """The deploy form: a :class:`GhostModule` (GhostNetV2's) with one biased conv per sum of branches."""
        fused = GhostModule(self.in_channels, self.out_channels, self.kernel_size, self.stride, ratio=self.ratio,
                            dw_size=self.dw_size, act_layer=self.act_layer, use_dfc=self.short_conv is not None,
                            deploy=True).to(self.primary_rpr_conv[0].conv.weight)
        for target, branches in ((fused.primary_conv[0], (self.primary_rpr_conv, self.primary_rpr_scale,
                                                          self.primary_rpr_skip)),
                                 (fused.cheap_operation[0], (self.cheap_rpr_conv, self.cheap_rpr_scale,
                                                             self.cheap_rpr_skip))):
            summed = fuse_branches(*branches)
            target.weight.copy_(summed.weight)
            target.bias.copy_(summed.bias)
        if self.short_conv is not None:
            fused.short_conv = self.short_conv.fuse()
        return fused.train(self.training)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, ratio={self.ratio}, dw_size={self.dw_size}, "
                f"num_branches={len(self.primary_rpr_conv)}")


def ghost_module_v3(in_chs: int, out_chs: int, *, act_layer: ActFactory | None = nn.ReLU, use_dfc: bool = False,
                    num_branches: int = NUM_BRANCHES, deploy: bool = False) -> nn.Module:
    """GhostNetV3's module in training form, or (``deploy``) the GhostNetV2 module it fuses into."""
    if deploy:
        return GhostModule(in_chs, out_chs, act_layer=act_layer, use_dfc=use_dfc, deploy=True)
    return GhostModuleV3(in_chs, out_chs, act_layer=act_layer, use_dfc=use_dfc, num_branches=num_branches)


class GhostBottleneckV3(GhostBottleneck):
    """The Ghost bottleneck of GhostNetV3: V3 Ghost modules, and the stride-2 depthwise conv as ``dw_rpr_conv``
    branches plus a 1x1 depthwise ``dw_rpr_scale`` branch (no identity branch at stride 2); SE and shortcut as V2."""

    def __init__(
        self, in_chs: int, mid_chs: int, out_chs: int, dw_kernel_size: int = 3, stride: int = 1, *,
        se_ratio: float = 0.0, use_dfc: bool = False, num_branches: int = NUM_BRANCHES, drop_path: float = 0.0,
        deploy: bool = False,
    ) -> None:
        def expand(i, o, **kw):
            return ghost_module_v3(i, o, use_dfc=use_dfc, num_branches=num_branches, **kw)

        def project(i, o, **kw):
            return ghost_module_v3(i, o, num_branches=num_branches, **kw)

        super().__init__(in_chs, mid_chs, out_chs, dw_kernel_size, stride, se_ratio=se_ratio, expand_layer=expand,
                         project_layer=project, drop_path=drop_path, deploy=deploy)
        self.dw_rpr_conv = self.dw_rpr_scale = None
        if stride > 1 and not deploy:
            self.conv_dw = self.bn_dw = None
            self.dw_rpr_conv = conv_branches(num_branches, mid_chs, mid_chs, dw_kernel_size, stride, groups=mid_chs)
            self.dw_rpr_scale = ConvBn(mid_chs, mid_chs, 1, stride, groups=mid_chs) if dw_kernel_size > 1 else None
        # the branches where the official code registers them, after ghost1: state-dict keys in timm's order
        order = ["ghost1", "conv_dw", "bn_dw", "dw_rpr_conv", "dw_rpr_scale"]
        self._modules = {**{k: self._modules[k] for k in order if k in self._modules}, **self._modules}

    def depthwise(self, x: torch.Tensor) -> torch.Tensor:
        if self.dw_rpr_conv is not None:
            return sum_branches(x, self.dw_rpr_conv, self.dw_rpr_scale)
        return super().depthwise(x)

    def fuse(self) -> GhostBottleneckV3:
        """Sum the depthwise branches into ``conv_dw`` (``bn_dw`` left as the identity), then fold as V2 does."""
        if self.dw_rpr_conv is not None:
            self.conv_dw, self.bn_dw = fuse_branches(self.dw_rpr_conv, self.dw_rpr_scale), nn.Identity()
            self.dw_rpr_conv = self.dw_rpr_scale = None
        return super().fuse()

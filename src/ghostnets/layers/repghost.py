"""The RepGhost module and bottleneck: feature reuse by re-parameterization instead of concatenation.

Chen et al., "RepGhost: A Hardware-Efficient Ghost Module via Re-parameterization", arXiv 2211.06088, Sec. 3, Fig. 3.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from .conv_bn_act import ActFactory, activation, conv_bn_act, conv_norm, fold_bn, is_identity
from .deploy_conv import DeployConv2d, fuse_relu
from .ghost import GhostBottleneck


class RepGhostModule(nn.Module):
    """relu?( cheap_dw(x1) + sum(fusion branches(x1)) ), x1 = primary 1x1 conv+BN(+ReLU).

    Training form: ``cheap_operation = [dw conv, BN]``; ``fusion_bn`` holds the identity branches: a BN
    (``reparam_bn``) and/or a bare identity (``reparam_identity``); no branch is the paper's "w/o re-param" ablation.
    ``fuse()`` merges all of them into one biased depthwise conv (``cheap_operation.weight``/``.bias``, the
    official deploy layout). The activation sits after the add.
    """

    def __init__(
        self, in_chs: int, out_chs: int, *, kernel_size: int = 1, dw_size: int = 3, stride: int = 1,
        act_layer: ActFactory | None = nn.ReLU, reparam_bn: bool = True, reparam_identity: bool = False,
        deploy: bool = False,
    ) -> None:
        super().__init__()
        self.primary_conv = conv_bn_act(in_chs, out_chs, kernel_size, stride, act_layer=act_layer, deploy=deploy)
        # registered in the official order (fusion_bn before cheap_operation), so state dicts list keys alike
        if deploy:
            self.fusion_bn = nn.Sequential()
            self.cheap_operation = DeployConv2d(out_chs, out_chs, dw_size, 1, dw_size // 2, groups=out_chs, bias=True)
        else:
            branches = ([nn.BatchNorm2d(out_chs)] if reparam_bn else []) + ([nn.Identity()] if reparam_identity else [])
            self.fusion_bn = nn.Sequential(*branches)
            self.cheap_operation = nn.Sequential(*conv_norm(out_chs, out_chs, dw_size, groups=out_chs))
        self.relu = activation(act_layer)
        if deploy:
            self.cheap_operation, self.relu = fuse_relu(self.cheap_operation, self.relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        for branch in self.fusion_bn:
            x2 = x2 + branch(x1)
        return x2 if is_identity(self.relu) else self.relu(x2)

    def fuse(self) -> RepGhostModule:
        """Merge the cheap conv and every identity branch into one depthwise conv (in place; returns ``self``)."""
        if isinstance(self.cheap_operation, nn.Conv2d):
            return self
        conv, bn = self.cheap_operation
        fused = fold_bn(conv, bn)
        centre = (conv.kernel_size[0] // 2, conv.kernel_size[1] // 2)
        for branch in self.fusion_bn:
            identity = nn.Conv2d(conv.out_channels, conv.out_channels, conv.kernel_size, padding=conv.padding,
                                 groups=conv.groups, bias=True).to(conv.weight)
            with torch.no_grad():
                identity.weight.zero_()
                identity.weight[:, 0, centre[0], centre[1]] = 1.0
                identity.bias.zero_()
            if isinstance(branch, nn.BatchNorm2d):
                identity = fold_bn(identity, branch)
            with torch.no_grad():
                fused.weight += identity.weight
                fused.bias += identity.bias
        self.fusion_bn = nn.Sequential()
        self.cheap_operation, self.relu = fuse_relu(fused, self.relu)
        return self


class RepGhostBottleneck(GhostBottleneck):
    """The Ghost bottleneck built from RepGhost modules (RepGhostNet, Fig. 3(c)); ``shortcut=False`` is the ablation."""

    def __init__(
        self, in_chs: int, mid_chs: int, out_chs: int, dw_kernel_size: int = 3, stride: int = 1, *,
        se_ratio: float = 0.0, shortcut: bool = True, reparam_bn: bool = True, reparam_identity: bool = False,
        drop_path: float = 0.0, deploy: bool = False,
    ) -> None:
        module = partial(RepGhostModule, reparam_bn=reparam_bn, reparam_identity=reparam_identity)
        super().__init__(
            in_chs, mid_chs, out_chs, dw_kernel_size, stride, se_ratio=se_ratio, expand_layer=module,
            use_shortcut=shortcut, drop_path=drop_path, deploy=deploy,
        )

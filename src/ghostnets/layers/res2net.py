"""Res2Net's bottleneck (Gao, Cheng, Zhao, Zhang, Yang, Torr, "Res2Net: A New Multi-scale Backbone Architecture",
TPAMI 2021, arXiv 1904.01169, Sec. 3.1), in the official layout (``Res2Net/Res2Net-PretrainedModels``'s
``Bottle2neck``; timm's ``res2net50_*`` use the same keys), so the released state dicts load as they are.

conv1 1x1 to ``width * scale`` (``width = floor(planes * base_width / 64)``), BN, ReLU, split into ``scale`` chunks
x_1..x_s of ``width`` channels. y_1 = K_1(x_1), y_i = K_i(x_i + y_{i-1}) for 1 < i < s (each K_i a 3x3 conv
``convs.{i-1}`` with the block's stride, BN ``bns.{i-1}``, ReLU), and the last chunk passes unchanged (the
paper's Eq. 1 keeps the first one; the official code, whose weights these are, the last). The
first block of every stage (the official ``stype='stage'``) adds nothing (y_i = K_i(x_i)) and passes its last chunk
through ``AvgPool2d(3, stride, 1)``. Concat, conv3 1x1 to ``planes * 4``, bn3, [attention], + shortcut, ReLU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .block_registry import register_block
from .conv_bn_act import absorbs_batchnorm, fold_bn, fold_named_pairs, is_identity
from .resnet_blocks import ConvFactory, ResidualBlock


class Bottle2neck(ResidualBlock):
    """Res2Net's hierarchical-split bottleneck; ``groups`` > 1 is Res2NeXt (grouped 3x3 convs, ``width * groups``
    channels per chunk). ``first`` (default: a stride or width change, where the official networks put
    ``stype='stage'``) selects the stage-opening form. ``attn_layer(channels)`` (SE, ECA) is applied after ``bn3``,
    before the add, stored as ``se`` as timm does."""

    expansion = 4

    def __init__(self, in_chs: int, planes: int, stride: int = 1, conv_layer: ConvFactory = nn.Conv2d, *,
                 base_width: int = 26, scale: int = 4, groups: int = 1, first: bool | None = None,
                 attn_layer: Callable[[int], nn.Module] | None = None, drop_path: float = 0.0) -> None:
        super().__init__()
        if scale < 2:
            raise ValueError(f"Bottle2neck: scale (s) must be >= 2, got {scale}: the hierarchy splits the block's "
                             "channels into s groups, s - 1 of them through 3x3 convs (Res2Net, arXiv 1904.01169, "
                             "Sec. 3.1); s = 1 is ResNet's bottleneck")
        self.width = width = int(planes * base_width / 64) * groups
        if width < groups:
            raise ValueError(f"Bottle2neck: the chunk width floor(planes * base_width / 64) * groups is {width} "
                             f"(planes={planes}, base_width={base_width}, groups={groups}); it needs >= 1 channel "
                             "per group: raise planes or base_width")
        self.scale = scale
        self.out_chs = out_chs = planes * self.expansion
        self.first = (stride != 1 or in_chs != out_chs) if first is None else first
        self.conv1, self.bn1 = conv_layer(in_chs, width * scale, 1, 1, 0, bias=False), nn.BatchNorm2d(width * scale)
        grouped = {} if groups == 1 else {"groups": groups}
        self.convs = nn.ModuleList(conv_layer(width, width, 3, stride, 1, bias=False, **grouped)
                                   for _ in range(scale - 1))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale - 1))
        self.pool = nn.AvgPool2d(3, stride, 1) if self.first else None
        self.conv3, self.bn3 = conv_layer(width * scale, out_chs, 1, 1, 0, bias=False), nn.BatchNorm2d(out_chs)
        self.se = attn_layer(out_chs) if attn_layer is not None else None
        self.init_shortcut(in_chs, out_chs, stride, conv_layer, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if not is_identity(self.bn1):
            out = self.bn1(out)
        chunks = torch.split(self.relu(out), self.width, 1)
        outs: list[torch.Tensor] = []
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            sp = chunks[i] if i == 0 or self.first else outs[-1] + chunks[i]
            sp = conv(sp)
            if not is_identity(bn):
                sp = bn(sp)
            outs.append(self.relu(sp))
        outs.append(chunks[-1] if self.pool is None else self.pool(chunks[-1]))
        out = self.conv3(torch.cat(outs, 1))
        if not is_identity(self.bn3):
            out = self.bn3(out)
        if self.se is not None:
            out = self.se(out)
        return self.finish(out, x)

    def fuse(self) -> Bottle2neck:
        """Fold bn1, every ``bns.i``, bn3 and the projection's BN in place."""
        fold_named_pairs(self, [("conv1", "bn1"), ("conv3", "bn3")])
        for i, bn in enumerate(self.bns):
            if isinstance(bn, nn.BatchNorm2d) and absorbs_batchnorm(self.convs[i]):
                self.convs[i], self.bns[i] = fold_bn(self.convs[i], bn), nn.Identity()
        if self.downsample is not None:
            self.downsample.fuse()
        return self


@register_block("res2net", honours=("kernel_size",), paper="Gao et al., Res2Net, TPAMI 2021", arxiv="1904.01169",
                example=(64, 128),
                summary="Res2Net bottleneck: 1x1, 4 chunks of 26w with hierarchical 3x3 convs, concat, 1x1 (4x)")
def res2net_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3) -> nn.Module:
    if kernel_size != 3:
        raise ValueError(f"Res2Net's hierarchical convs are 3x3 (the receptive field grows by chaining them, "
                         f"arXiv 1904.01169 Sec. 3.1): kernel_size must be 3, got {kernel_size}")
    if out_chs % Bottle2neck.expansion:
        raise ValueError(f"res2net: out_chs={out_chs} must be a multiple of 4 (the bottleneck expands planes by 4)")
    return Bottle2neck(in_chs, out_chs // Bottle2neck.expansion, stride)

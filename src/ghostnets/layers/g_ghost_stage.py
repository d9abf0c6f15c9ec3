"""The G-Ghost stage (Han et al., "GhostNets on Heterogeneous Devices via Cheap Operations", IJCV 2022, arXiv
2201.03297, Sec. 4 and Fig. 5): a stage whose middle blocks run on part of the channels only, the rest being "ghost"
features made by a cheap 1x1 conv of the first block's output plus a pooled mix of every intermediate output.

Built as the official ``Stage`` (huawei-noah ``g_ghost_regnet.py``; docs/reference.md §12), with its attribute names
so the official keys load: ``base`` (full-width first block, stride and projection), ``layers`` (``depth - 2`` blocks
on the first ``raw_planes`` channels, group width ``int(0.75 * group_width)``), ``merge`` (avg pool -> 1x1 conv -> BN
-> ReLU -> 1x1 conv -> BN over the concatenation of the base output and every intermediate output: a per-channel
vector), ``cheap`` (1x1 conv + BN of the other ``cheap_planes`` channels of the base output), ``end`` (full-width last
block on ``cat(raw path, relu(cheap + merge))``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .conv_bn_act import ConvSequence, fuse_tree
from .regnet_blocks import XBottleneck

RAW_GROUP_WIDTH_SCALE = 0.75  # the middle blocks' group width: int(group_width * 0.75) (official code)


def g_ghost_split(planes: int, group_width: int, cheap_ratio: float = 0.5) -> tuple[int, int, int]:
    """``(raw_planes, cheap_planes, raw_group_width)`` of a stage: the official rule
    ``raw = int(planes * (1 - cheap_ratio) / gw') * gw'`` with ``gw' = int(0.75 * group_width)``."""
    raw_gw = int(group_width * RAW_GROUP_WIDTH_SCALE)
    if not 0 < cheap_ratio < 1:
        raise ValueError(f"cheap_ratio must be in (0, 1), got {cheap_ratio}")
    raw = int(planes * (1 - cheap_ratio) / raw_gw) * raw_gw if raw_gw > 0 else 0
    if raw <= 0 or raw >= planes:
        raise ValueError(f"a G-Ghost stage of {planes} channels with group width {group_width} and cheap_ratio "
                         f"{cheap_ratio} leaves {raw} raw channels (multiples of int(0.75 * {group_width}) = "
                         f"{raw_gw}); it needs 0 < raw < planes: use a wider stage or a smaller group width")
    return raw, planes - raw, raw_gw


class GGhostStage(nn.Module):
    """``depth`` RegNetX blocks, ``depth - 2`` of them on the raw channels only (see the module docstring)."""

    def __init__(self, in_chs: int, planes: int, depth: int, stride: int, group_width: int, *,
                 cheap_ratio: float = 0.5, drop_path: Sequence[float] | float = 0.0) -> None:
        super().__init__()
        if depth < 3:
            raise ValueError(f"a G-Ghost stage needs depth >= 3 (base, at least one middle block, end), got {depth}; "
                             "shallower stages are plain RegNetX stages")
        rates = [float(drop_path)] * depth if isinstance(drop_path, (int, float)) else list(drop_path)
        if len(rates) != depth:
            raise ValueError(f"drop_path: one rate per block ({depth}) expected, got {len(rates)}")
        raw, cheap, raw_gw = g_ghost_split(planes, group_width, cheap_ratio)
        self.raw_planes, self.cheap_planes = raw, cheap
        # registration order as in the official __init__, so state_dict() lists the keys in the official order
        self.base = XBottleneck(in_chs, planes, stride, group_width=group_width, drop_path=rates[0])
        self.end = XBottleneck(planes, planes, 1, group_width=group_width, drop_path=rates[-1])
        self.merge = ConvSequence(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(planes + raw * (depth - 2), cheap, 1, bias=False), nn.BatchNorm2d(cheap), nn.ReLU(inplace=True),
            nn.Conv2d(cheap, cheap, 1, bias=False), nn.BatchNorm2d(cheap),
        )
        self.cheap = ConvSequence(nn.Conv2d(cheap, cheap, 1, bias=False), nn.BatchNorm2d(cheap))
        self.cheap_relu = nn.ReLU(inplace=True)
        # the official first middle block's "downsample" x[:, :raw_planes] slices a raw_planes-wide input: identity
        self.layers = nn.Sequential(*[XBottleneck(raw, raw, 1, group_width=raw_gw, drop_path=r) for r in rates[1:-1]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.base(x)
        e = x0[:, : self.raw_planes]
        pooled = [F.adaptive_avg_pool2d(x0, 1)]  # pooling each map before the concat = the official pool after it
        for block in self.layers:
            e = block(e)
            pooled.append(F.adaptive_avg_pool2d(e, 1))
        m = self.merge(torch.cat(pooled, 1))
        c = self.cheap_relu(self.cheap(x0[:, self.raw_planes:]) + m)  # + the per-channel vector, broadcast
        return self.end(torch.cat((e, c), 1))

    def fuse(self) -> GGhostStage:
        """The deploy form: every BatchNorm folded, the merge's two as well (its convs see 1x1 maps)."""
        for name, part in list(self.named_children()):
            setattr(self, name, fuse_tree(part))
        return self

"""MGIC: the Multigrid-in-Channels block (Eliasof, Ephrath, Ruthotto, Treister, SIAM J. Sci. Comput. 45 (2023)
S307-S328, arXiv 2011.09128; docs/reference.md "MGIC").

A V-cycle over channel levels, as in the official ``BGUCompSci/MultigridInChannelsCNNs`` (``resnetMG.py``,
``mobilenetv3_MG.py``: ``MgBlockDwGroup``, ``genTensor4CycleDwGroup``, ``netMGParamsDWGroup``): going down, a grouped
1x1 restriction ``R`` halves the channels (``groups = C / group_size``) until the next width would fall below
``coarsest``; the coarsest level runs a dense (ungrouped) block; going up, the grouped 1x1 prolongation ``P`` adds the
*change* of the coarse state to the fine state, ``z = x_fine + bnp1(P(x_coarse - R(x_fine)))``, and a grouped block
smooths ``z``. Levels live in ``mgStep`` in the official order (restrictions, coarsest, prolongations) under the
official attribute names, so the official state dicts load unchanged.

``kind="resnet"`` (``resnetMG.py``, basic residual smoothers ``relu(x + bn2(k2(relu(bn1(k1 x)))))``; a width or stride
change first runs a depthwise 3x3 connector + BN + ReLU) or ``kind="mbv3"`` (``mobilenetv3_MG.py``, inverted-residual
smoothers ``relu(conv(x) + x) + x`` with optional SE and hard-swish, a BN after ``R``, a plain 1x1 connector).
"""

from __future__ import annotations

import torch
from torch import nn

from .block_registry import register_block
from .conv_bn_act import ConvSequence, fold_named_pairs, is_identity

GROUP_SIZE = 32  # channels per group (the driver's --fixgroups; ModelParameters' own default is 16)
COARSEST = 32  # the V-cycle stops once C/2 < COARSEST (the driver's --mgFcChannel)
KINDS = ("resnet", "mbv3")


def make_divisible8(v: float) -> int:
    """The official ``_make_divisible(v, 8)`` (TF MobileNet rounding)."""
    new_v = max(8, int(v + 4) // 8 * 8)
    return new_v + 8 if new_v < 0.9 * v else new_v


def level_groups(chs: int, mid: int, group_size: int, kind: str) -> int:
    """``groupsChannel`` of a level of width ``chs``: ``max(int(chs / group_size), 1)``; the MobileNet code lowers it
    until it divides the width and the hidden width too."""
    groups = max(int(chs / group_size), 1)
    if kind == "mbv3":
        while chs % groups or mid % groups:
            groups -= 1
    return groups


def _grouped(in_chs: int, out_chs: int, groups: int, what: str, kernel_size: int = 1) -> nn.Conv2d:
    if in_chs % groups or out_chs % groups:
        raise ValueError(f"MGIC {what}: {in_chs} -> {out_chs} channels in {groups} groups (channels / group_size) "
                         f"must divide both widths; pick channels that are multiples of group_size at every level")
    return nn.Conv2d(in_chs, out_chs, kernel_size, 1, kernel_size // 2, groups=groups, bias=False)


class SELayer(nn.Module):
    """The official MobileNetV3 SE (``fc.0``/``fc.2`` Linear layers, reduction 4 rounded to 8, hard sigmoid)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = make_divisible8(channels // reduction)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels),
                                nn.Hardsigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean((2, 3))).unsqueeze(-1).unsqueeze(-1)


def inverted_residual(in_chs: int, mid: int, out_chs: int, kernel_size: int, groups: int, use_se: bool,
                      use_hs: bool) -> ConvSequence:
    """The official level ``conv``: [pw (grouped) BN act] dw BN [act SE | SE act] pw-linear (grouped) BN."""
    def act() -> nn.Module:
        return nn.Hardswish() if use_hs else nn.ReLU(inplace=True)

    se = SELayer(mid) if use_se else nn.Identity()
    dw = [nn.Conv2d(mid, mid, kernel_size, 1, kernel_size // 2, groups=mid, bias=False), nn.BatchNorm2d(mid)]
    project = [_grouped(mid, out_chs, groups, "pw-linear"), nn.BatchNorm2d(out_chs)]
    if in_chs == mid:
        return ConvSequence(*dw, act(), se, *project)
    expand = [_grouped(in_chs, mid, groups, "pw expansion"), nn.BatchNorm2d(mid), act()]
    return ConvSequence(*expand, *dw, se, act(), *project)


class MGICLevel(nn.Module):
    """One level of the V-cycle (the official ``netMGParamsDWGroup``): ``role`` is "restrict", "coarsest" or
    "prolong"; ``chs`` is the level's width (the fine width for "restrict" and "prolong")."""

    def __init__(self, role: str, chs: int, mid: int, *, kind: str, group_size: int, kernel_size: int,
                 use_se: bool = False, use_hs: bool = False) -> None:
        super().__init__()
        self.role, self.kind = role, kind
        groups = 1 if role == "coarsest" else level_groups(chs, mid, group_size, kind)
        half = chs // 2
        if role == "restrict":
            self.R = _grouped(chs, half, groups, "restriction R")
            nn.init.constant_(self.R.weight, 1.0 / group_size)
            if kind == "mbv3":
                self.bnr = nn.BatchNorm2d(half)
            return
        if kind == "resnet":
            self.k1 = _grouped(chs, chs, groups, "smoother k1", kernel_size)
            self.k2 = _grouped(chs, chs, groups, "smoother k2", kernel_size)
            self.bn1, self.bn2 = nn.BatchNorm2d(chs), nn.BatchNorm2d(chs)
        else:
            self.conv = inverted_residual(chs, mid, chs, kernel_size, groups, use_se, use_hs)
        if role == "prolong":
            self.P = _grouped(half, chs, groups, "prolongation P")
            nn.init.constant_(self.P.weight, 1.0 / group_size)
            self.bnp1 = nn.BatchNorm2d(chs)

    def restrict(self, x: torch.Tensor) -> torch.Tensor:
        x = self.R(x)
        bnr = getattr(self, "bnr", None)
        return x if bnr is None or is_identity(bnr) else bnr(x)

    def smooth(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "resnet":
            y = self.k1(x)
            y = torch.relu(y if is_identity(self.bn1) else self.bn1(y))
            y = self.k2(y)
            return torch.relu(x + (y if is_identity(self.bn2) else self.bn2(y)))
        return torch.relu(self.conv(x) + x) + x  # the official mbnetStep, as written

    def correct(self, coarse: torch.Tensor, restricted: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        """The coarse-grid correction ``fine + bnp1(P(coarse - restricted))``."""
        y = self.P(coarse - restricted)
        return fine + (y if is_identity(self.bnp1) else self.bnp1(y))

    def fuse(self) -> MGICLevel:
        pairs = {"restrict": [("R", "bnr")] if self.kind == "mbv3" else [],
                 "coarsest": [("k1", "bn1"), ("k2", "bn2")] if self.kind == "resnet" else [],
                 "prolong": ([("k1", "bn1"), ("k2", "bn2")] if self.kind == "resnet" else []) + [("P", "bnp1")]}
        return fold_named_pairs(self, pairs[self.role])


class MGICBlock(nn.Module):
    """The MGIC block (official ``MgBlockDwGroup``): [connector to ``out_chs`` at ``stride``] then one V-cycle."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, *, kind: str = "resnet", mid_chs: int | None = None,
                 kernel_size: int = 3, group_size: int = GROUP_SIZE, coarsest: int = COARSEST, use_se: bool = False,
                 use_hs: bool = False) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"MGIC kind must be one of {KINDS}, got {kind!r}")
        if stride not in (1, 2):
            raise ValueError(f"MGIC takes stride 1 or 2 (the connector's stride), got {stride}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"MGIC kernel_size must be odd (same padding), got {kernel_size}")
        if group_size < 1 or coarsest < 1:
            raise ValueError(f"group_size and coarsest must be >= 1, got {group_size}, {coarsest}")
        if out_chs < 2:
            raise ValueError(f"MGIC halves the channels at least once: out_chs must be >= 2, got {out_chs}")
        mid = out_chs if mid_chs is None else int(mid_chs)
        if kind == "resnet" and mid != out_chs:
            raise ValueError("the ResNet-MGIC block has no hidden width: leave mid_chs unset (or equal to out_chs)")
        self.in_chs, self.out_chs, self.stride, self.kind = in_chs, out_chs, stride, kind
        self.connector = stride != 1 or in_chs != out_chs
        if self.connector and kind == "resnet":
            if out_chs % in_chs:
                raise ValueError(f"the ResNet-MGIC connector is a depthwise 3x3 conv (groups=in_chs): out_chs "
                                 f"({out_chs}) must be a multiple of in_chs ({in_chs})")
            self.shortcut = ConvSequence(nn.Conv2d(in_chs, out_chs, 3, stride, 1, groups=in_chs, bias=False),
                                         nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True))
        elif self.connector:
            self.shortcut = nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride, 0, bias=False))
        levels: list[MGICLevel] = []
        self._build(out_chs, mid, levels, kind=kind, group_size=group_size, coarsest=coarsest,
                    kernel_size=kernel_size, use_se=use_se, use_hs=use_hs)
        self.mgStep = nn.ModuleList(levels)

    @staticmethod
    def _build(chs: int, mid: int, levels: list[MGICLevel], **kw) -> None:
        """``genTensor4CycleDwGroup``: restrict at ``chs``; coarsest once ``chs / 2 < coarsest``, else recurse;
        prolong back to ``chs``."""
        level_kw = {k: v for k, v in kw.items() if k != "coarsest"}
        levels.append(MGICLevel("restrict", chs, mid, **level_kw))
        half, half_mid = chs // 2, mid // 2
        if half < kw["coarsest"] or half < 2:
            if half < 1 or half_mid < 1:
                raise ValueError(f"MGIC: the coarsest level would have {half} channels ({half_mid} hidden); widen")
            levels.append(MGICLevel("coarsest", half, half_mid, **level_kw))
        else:
            MGICBlock._build(half, half_mid, levels, **kw)
        levels.append(MGICLevel("prolong", chs, mid, **level_kw))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.connector:
            x = self.shortcut(x)
        fines: list[torch.Tensor] = []
        restricted: list[torch.Tensor] = []
        for level in self.mgStep:
            if level.role == "restrict":
                fines.append(x)
                x = level.restrict(x)
                restricted.append(x)
            elif level.role == "coarsest":
                x = level.smooth(x)
            else:
                x = level.smooth(level.correct(x, restricted.pop(), fines.pop()))
        return x


_PAPER = "Eliasof et al., MGIC: Multigrid-in-Channels Neural Network Architectures, SIAM J. Sci. Comput. 2023"


@register_block("mgic", honours=("kernel_size",), paper=_PAPER, arxiv="2011.09128", example=(16, 32),
                summary="ResNet-MGIC: a V-cycle over channel levels, grouped 3x3 residual smoothers, grouped 1x1 R/P, "
                        "dense coarsest block; depthwise 3x3 connector on a width/stride change")
def mgic_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3) -> nn.Module:
    return MGICBlock(in_chs, out_chs, stride, kind="resnet", kernel_size=kernel_size)


@register_block("mgic_mbv3", honours=("kernel_size", "expansion", "mid_chs", "se_ratio", "act_layer"), paper=_PAPER,
                arxiv="2011.09128", example=(16, 24),
                summary="MobileNetV3-MGIC: the V-cycle with grouped inverted-residual smoothers (SE, hard-swish)")
def mgic_mbv3_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3,
                    expansion: float | None = None, mid_chs: int | None = None, se_ratio: float = 0.0,
                    act_layer: type[nn.Module] | None = None) -> nn.Module:
    if se_ratio not in (0, 0.0, 0.25):
        raise ValueError(f"the official MGIC SE reduces by 4: se_ratio must be 0 or 0.25, got {se_ratio}")
    if act_layer not in (None, nn.ReLU, nn.Hardswish):
        raise ValueError(f"MGIC's MobileNetV3 levels use ReLU or Hardswish, got {act_layer}")
    mid = mid_chs if mid_chs is not None else make_divisible8(in_chs * (3.0 if expansion is None else expansion))
    return MGICBlock(in_chs, out_chs, stride, kind="mbv3", mid_chs=mid, kernel_size=kernel_size,
                     use_se=se_ratio > 0, use_hs=act_layer is nn.Hardswish)

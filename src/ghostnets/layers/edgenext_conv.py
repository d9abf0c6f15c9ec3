"""EdgeNeXt's convolution encoder (Maaz et al., "EdgeNeXt: Efficiently Amalgamated CNN-Transformer Architecture for
Mobile Vision Applications", ECCV-W CADL 2022, arXiv 2206.10589, Fig. 2 "Conv. Encoder"; docs/reference.md
"EdgeNeXt"): depthwise kxk conv -> LayerNorm (channels last) -> Linear C->4C -> GELU -> Linear 4C->C -> layer scale
``gamma`` -> drop path -> + input. Also the stage entry that changes width and resolution (LayerNorm + 2x2 stride-2
conv) and the pointwise MLP the SDTA encoder shares.

Parameter names are timm's (``conv_dw``, ``norm``, ``mlp.fc1``, ``mlp.fc2``, ``gamma``); the official files say
``dwconv``/``pwconv1``/``pwconv2`` (``ghostnets.models.edgenext.official_names`` maps them).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from .block_registry import mid_channels, register_block
from .drop_path import DropPath
from .layer_norm import LayerNorm2d

LAYER_SCALE_INIT = 1e-6  # the paper's layer_scale_init_value
EXPANSION = 4.0  # expan_ratio of every published EdgeNeXt
NormFactory = Callable[[int], nn.Module]
channels_last_norm: NormFactory = partial(nn.LayerNorm, eps=1e-6)


def check_positive(**values: int) -> None:
    bad = [f"{k}={v!r}" for k, v in values.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if bad:
        raise ValueError(f"{', '.join(bad)}: must be a positive integer")


def check_odd_kernel(kernel_size: int, what: str) -> None:
    """A depthwise conv that keeps the size with padding ``k // 2`` needs an odd, positive kernel."""
    check_positive(kernel_size=kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size={kernel_size}: {what} must keep the size with padding k // 2, which needs an "
                         "odd kernel (EdgeNeXt uses 3, 5, 7, 9)")


def layer_scale(dim: int, init: float) -> nn.Parameter | None:
    """The per-channel residual scale of CaiT/ConvNeXt (``gamma``), or None for ``init <= 0`` (no scale)."""
    return nn.Parameter(init * torch.ones(dim)) if init > 0 else None


class PointwiseMlp(nn.Module):
    """Linear(C, hidden) -> act -> Linear(hidden, C) on channels-last tokens (the paper's point-wise convs)."""

    def __init__(self, dim: int, hidden: int, act_layer: Callable[[], nn.Module] = nn.GELU) -> None:
        super().__init__()
        check_positive(dim=dim, hidden=hidden)
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), act_layer(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvEncoder(nn.Module):
    """EdgeNeXt's conv encoder on ``dim`` channels at stride 1 (arXiv 2206.10589 §3.1, ``ConvEncoder``)."""

    def __init__(self, dim: int, kernel_size: int = 7, *, mid_chs: int | None = None, drop_path: float = 0.0,
                 ls_init_value: float = LAYER_SCALE_INIT, act_layer: Callable[[], nn.Module] = nn.GELU,
                 norm_layer: NormFactory = channels_last_norm) -> None:
        super().__init__()
        check_positive(dim=dim)
        check_odd_kernel(kernel_size, "the depthwise conv")
        self.conv_dw = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = norm_layer(dim)
        self.mlp = PointwiseMlp(dim, int(EXPANSION * dim) if mid_chs is None else mid_chs, act_layer)
        self.gamma = layer_scale(dim, ls_init_value)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm(self.conv_dw(x).permute(0, 2, 3, 1))  # (N, C, H, W) -> (N, H, W, C)
        x = self.mlp(x)
        if self.gamma is not None:
            x = self.gamma * x
        return shortcut + self.drop_path(x.permute(0, 3, 1, 2))


class Downsample(nn.Sequential):
    """EdgeNeXt's stage entry (the official ``downsample_layers[i]``): LayerNorm2d, then a 2x2 stride-2 conv
    ``in_chs -> out_chs``; indices ``0``/``1`` as in both the official and timm's layout."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        check_positive(in_chs=in_chs, out_chs=out_chs)
        super().__init__(LayerNorm2d(in_chs, eps=1e-6), nn.Conv2d(in_chs, out_chs, 2, 2))


def entered(block_name: str, in_chs: int, out_chs: int, stride: int, block: nn.Module) -> nn.Module:
    """``block`` as the shared interface builds it: behind EdgeNeXt's stage entry (``downsample``) at stride 2.

    EdgeNeXt changes width and resolution only there, so stride 1 needs ``in_chs == out_chs``.
    """
    check_positive(in_chs=in_chs, out_chs=out_chs)
    if stride not in (1, 2):
        raise ValueError(f"block {block_name!r}: stride must be 1 or 2 (EdgeNeXt halves the resolution only with its "
                         f"2x2 stride-2 stage entry), got {stride}")
    if stride == 1:
        if in_chs != out_chs:
            raise ValueError(f"block {block_name!r}: at stride 1 in_chs must equal out_chs (EdgeNeXt changes the width "
                             f"only in its stride-2 stage entry), got {in_chs} -> {out_chs}; use stride=2")
        return block
    return nn.Sequential(OrderedDict(downsample=Downsample(in_chs, out_chs), block=block))


@register_block("edgenext_conv", honours=("kernel_size", "expansion", "mid_chs", "act_layer"),
                paper="Maaz et al., EdgeNeXt, ECCV-W CADL 2022", arxiv="2206.10589",
                summary="dw kxk conv, LayerNorm, Linear 4x, GELU, Linear, layer scale, + input; stride 2: "
                        "LayerNorm + 2x2 s2 conv first")
def edgenext_conv_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 7,
                        expansion: float | None = None, mid_chs: int | None = None,
                        act_layer: Callable[[], nn.Module] = nn.GELU) -> nn.Module:
    hidden = mid_channels(out_chs, expansion, mid_chs, EXPANSION, divisor=1)
    return entered("edgenext_conv", in_chs, out_chs, stride,
                   ConvEncoder(out_chs, kernel_size, mid_chs=hidden, act_layer=act_layer))

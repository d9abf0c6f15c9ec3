"""Selective Kernel convolution and SKNet's bottleneck (Li, Wang, Hu, Yang, "Selective Kernel Networks", CVPR 2019,
arXiv 1903.06586, Sec. 3.1).

Split: M paths, path i a 3x3 grouped conv with dilation i + 1 ("dilated convolution instead of larger kernels": a
3x3 with dilation 2 sees a 5x5 field), each with BN and ReLU. Fuse: U = sum of the paths, s = global average of U,
z = ReLU(BN(fc_reduce(s))) of width d = max(C / r, L). Select: fc_select to M * C, softmax over the M paths per
channel, V = sum_i a_i * U_i. SKNet-50 (the official ``sknet50.prototxt``) is ResNeXt-50 32x4d with the 3x3 conv of
every bottleneck an SK conv at M = 2, G = 32, r = 16, L = 32; the attribute names are timm's ``skresnext50_32x4d``
(``conv1.conv``, ``conv2.paths.i.conv``, ``conv2.attn.fc_reduce``, ...), so its state dict loads as it is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .block_registry import register_block
from .conv_bn_act import activation, fold_named_pairs, is_identity
from .deploy_conv import fuse_relu
from .resnet_blocks import ConvFactory, ResidualBlock

REDUCTION = 16  # the paper's r
MIN_ATTN_CHS = 32  # the paper's L


def attention_width(channels: int, reduction: float = REDUCTION, min_chs: int = MIN_ATTN_CHS) -> int:
    """The paper's d = max(C / r, L) (Sec. 3.1); SKNet-50's C = 128 ... 1024 give d = 32, 32, 32, 64."""
    return max(int(channels / reduction), min_chs)


class ConvNormAct(nn.Module):
    """conv -> BN -> [activation] under timm's names ``conv``, ``bn`` (the activation has no weights)."""

    def __init__(self, conv: nn.Module, out_chs: int, act_layer: Callable[..., nn.Module] | None = nn.ReLU) -> None:
        super().__init__()
        self.conv, self.bn, self.act = conv, nn.BatchNorm2d(out_chs), activation(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if not is_identity(self.bn):
            x = self.bn(x)
        return x if is_identity(self.act) else self.act(x)

    def fuse(self) -> ConvNormAct:
        fold_named_pairs(self, [("conv", "bn")])
        self.conv, self.act = fuse_relu(self.conv, self.act)
        return self


class SelectiveKernelAttention(nn.Module):
    """Fuse and select: ``(B, M, C, H, W)`` path outputs -> softmax weights ``(B, M, C, 1, 1)`` over the paths."""

    def __init__(self, channels: int, num_paths: int, attn_chs: int) -> None:
        super().__init__()
        self.num_paths = num_paths
        self.fc_reduce = nn.Conv2d(channels, attn_chs, 1, bias=False)
        self.bn = nn.BatchNorm2d(attn_chs)
        self.act = nn.ReLU(inplace=True)
        self.fc_select = nn.Conv2d(attn_chs, channels * num_paths, 1, bias=False)

    def forward(self, paths: torch.Tensor) -> torch.Tensor:
        s = paths.sum(1).mean((2, 3), keepdim=True)  # U = sum of the paths, then global average pooling
        z = self.fc_reduce(s)
        if not is_identity(self.bn):
            z = self.bn(z)
        logits = self.fc_select(self.act(z))
        return logits.reshape(logits.shape[0], self.num_paths, -1, 1, 1).softmax(dim=1)

    def fuse(self) -> SelectiveKernelAttention:
        return fold_named_pairs(self, [("fc_reduce", "bn")])


class SelectiveKernelConv(nn.Module):
    """The SK convolution: ``num_paths`` (M >= 2) 3x3 convs of dilation 1..M, ``groups`` G, selected by attention.

    ``attn_chs`` (d) defaults to the paper's ``max(out_chs / reduction, min_attn_chs)``.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, *, num_paths: int = 2, groups: int = 1,
                 reduction: float = REDUCTION, min_attn_chs: int = MIN_ATTN_CHS, attn_chs: int | None = None,
                 conv_layer: ConvFactory = nn.Conv2d) -> None:
        super().__init__()
        if num_paths < 2:
            raise ValueError(f"SelectiveKernelConv: num_paths (M) must be >= 2, got {num_paths}: the attention "
                             "selects between at least two kernels (SKNet, arXiv 1903.06586, Sec. 3.1; M = 2 in "
                             "SKNet-50); use a plain conv for one path")
        if groups < 1 or in_chs % groups or out_chs % groups:
            raise ValueError(f"SelectiveKernelConv: groups (G={groups}) must divide both in_chs={in_chs} and "
                             f"out_chs={out_chs}; choose G dividing them")
        grouped = {} if groups == 1 else {"groups": groups}
        self.paths = nn.ModuleList(
            ConvNormAct(conv_layer(in_chs, out_chs, 3, stride, d, dilation=d, bias=False, **grouped), out_chs)
            for d in range(1, num_paths + 1)
        )
        self.attn = SelectiveKernelAttention(
            out_chs, num_paths, attn_chs if attn_chs is not None else attention_width(out_chs, reduction, min_attn_chs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        paths = torch.stack([path(x) for path in self.paths], dim=1)
        return (paths * self.attn(paths)).sum(1)

    def fuse(self) -> SelectiveKernelConv:
        """Fold each path's BN and the attention's BN."""
        for module in (*self.paths, self.attn):
            module.fuse()
        return self


class SKBottleneck(ResidualBlock):
    """conv1x1 -> SK conv (stride, G groups) -> conv1x1 (4x), each with BN, [attention], + shortcut, ReLU.

    SKNet-50's block: ResNeXt's inner width ``floor(planes * base_width / 64) * groups`` with its grouped 3x3
    replaced by a :class:`SelectiveKernelConv`. ``attn_layer(channels)`` (SE, ECA) is applied after the last BN,
    before the add, stored as ``se`` as timm does.
    """

    expansion = 4

    def __init__(self, in_chs: int, planes: int, stride: int = 1, conv_layer: ConvFactory = nn.Conv2d, *,
                 groups: int = 32, base_width: int = 4, num_paths: int = 2, reduction: float = REDUCTION,
                 min_attn_chs: int = MIN_ATTN_CHS, attn_layer: Callable[[int], nn.Module] | None = None,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        width = int(planes * base_width / 64) * groups
        if width < groups:
            raise ValueError(f"SKBottleneck: the inner width floor(planes * base_width / 64) * groups is {width} "
                             f"(planes={planes}, base_width={base_width}, groups={groups}); it needs >= 1 channel "
                             "per group: raise planes or base_width")
        self.out_chs = out_chs = planes * self.expansion
        self.conv1 = ConvNormAct(conv_layer(in_chs, width, 1, 1, 0, bias=False), width)
        self.conv2 = SelectiveKernelConv(width, width, stride, num_paths=num_paths, groups=groups,
                                         reduction=reduction, min_attn_chs=min_attn_chs, conv_layer=conv_layer)
        self.conv3 = ConvNormAct(conv_layer(width, out_chs, 1, 1, 0, bias=False), out_chs, act_layer=None)
        self.se = attn_layer(out_chs) if attn_layer is not None else None
        self.init_shortcut(in_chs, out_chs, stride, conv_layer, drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.conv2(self.conv1(x)))
        if self.se is not None:
            out = self.se(out)
        return self.finish(out, x)

    def fuse(self) -> SKBottleneck:
        """Fold every BN of the block (conv1, the SK paths and attention, conv3, the projection) in place."""
        for module in (self.conv1, self.conv2, self.conv3, self.downsample):
            if module is not None:
                module.fuse()
        return self


def _planes(block: str, out_chs: int) -> int:
    if out_chs % SKBottleneck.expansion:
        raise ValueError(f"{block}: out_chs={out_chs} must be a multiple of 4 (the bottleneck expands planes by 4)")
    return out_chs // SKBottleneck.expansion


@register_block("sk", honours=("kernel_size",), paper="Li et al., Selective Kernel Networks, CVPR 2019",
                arxiv="1903.06586", example=(64, 128),
                summary="SKNet bottleneck: 1x1, SK conv (3x3 dilation 1 and 2, G=32, softmax selection), 1x1 (4x)")
def sk_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3) -> nn.Module:
    if kernel_size != 3:
        raise ValueError(f"the SK conv's paths are 3x3 with dilations 1..M (a dilated 3x3 replaces each larger "
                         f"kernel, SKNet Sec. 3.1): kernel_size must be 3, got {kernel_size}")
    return SKBottleneck(in_chs, _planes("sk", out_chs), stride)

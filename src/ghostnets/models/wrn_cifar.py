"""Wide Residual Networks for CIFAR (Zagoruyko & Komodakis, BMVC 2016, arXiv 1605.07146): WRN-d-k.

szagoruyko/wide-residual-networks ``pytorch/resnet.py`` (docs/reference.md, "CIFAR WRN"): depth 6n + 4; a 3x3 stem
conv 3 -> 16 with no BatchNorm after it (the blocks are pre-activation); three groups of n wide basic blocks
(layers/wide_basic.py) at 16k, 32k, 64k channels, strides 1, 2, 2; then BN -> ReLU -> global average pool ->
Linear. ``dropout`` is the rate between each block's convs (0.3 in the README's "-dropout" runs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..layers.channels import scaled
from ..layers.conv_bn_act import fold_affine
from ..layers.wide_basic import ChannelAffine, WideBasic, to_affine
from .base import ClassifierNet, finish_plain_net
from .family import Family, Variant
from .resnet import CIFAR_INPUT

GROUP_WIDTHS = (16, 32, 64)  # x the widen factor k
STEM_CHS = 16


class WideResNet(ClassifierNet):
    """WRN-``depth``-``widen_factor`` for 32 px inputs: ``conv1``, ``layer1..3`` of :class:`WideBasic`, ``bn``,
    ``act``, ``global_pool``, ``fc`` (pytorchcv's ``CIFARWRN`` parameters in the same order)."""

    head_name = "fc"
    stem_pattern = r"^conv1"
    stage_pattern = r"^layer(\d+)"
    supports_features_only = True

    def __init__(
        self, *, depth: int = 28, widen_factor: int = 10, dropout: float = 0.0, width: float = 1.0,
        num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
        deploy: bool = False, channels_last: bool = True,
    ) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4 with n >= 1 blocks per group (10, 16, 22, 28, 40, ...), "
                             f"got {depth!r}")
        if isinstance(widen_factor, bool) or not isinstance(widen_factor, int) or widen_factor < 1:
            raise ValueError(f"widen_factor k must be an integer >= 1 (groups of 16k, 32k, 64k), got {widen_factor!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout (between each block's convs) must be in [0, 1), got {dropout!r}")
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, width=width, deploy=False,
                         channels_last=channels_last, drop_path_rate=drop_path_rate, default_input_size=(32, 32))
        self.depth, self.widen_factor, self.dropout = depth, widen_factor, dropout
        in_chs = scaled(STEM_CHS, width)
        self.conv1 = nn.Conv2d(in_chans, in_chs, 3, 1, 1, bias=False)
        n = (depth - 4) // 6
        reduction, index = 1, 0
        for s, chs in enumerate(GROUP_WIDTHS):
            stride = 1 if s == 0 else 2
            blocks = []
            for j in range(n):
                blocks.append(WideBasic(in_chs, scaled(chs * widen_factor, width), stride if j == 0 else 1,
                                        dropout=dropout, drop_path=drop_path_rate * index / (3 * n)))
                in_chs = blocks[-1].out_chs
                index += 1
            reduction *= stride
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=in_chs, reduction=reduction, module=f"layer{s + 1}"))
        self.bn = nn.BatchNorm2d(in_chs)  # on the last residual sum: a ChannelAffine once deployed
        self.act = nn.ReLU(inplace=True)
        finish_plain_net(self, in_chs, deploy)

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [(f"layer{s + 1}", getattr(self, f"layer{s + 1}")) for s in range(len(GROUP_WIDTHS))]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(self.prepare(x, self.conv1.weight))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem, groups, then the final BN -> ReLU (pre-activation: the last sum is normalised before pooling)."""
        return self.act(self.bn(super().forward_features(x)))

    def forward_intermediates(
        self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
        stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The groups' outputs (the residual sums, before any norm); the final features, as ``forward_features``
        gives them (after the final BN -> ReLU), when the last group ran."""
        out = super().forward_intermediates(x, indices, norm, stop_early, output_fmt, intermediates_only)
        if intermediates_only:
            return out
        final, maps = out
        ran_all = not stop_early or max(self.tap_indices(indices)) == len(self.feature_info) - 1
        return (self.act(self.bn(final)) if ran_all else final), maps

    def fuse(self) -> WideResNet:
        """The blocks fold their ``bn2`` (the walker has run them); the first block's ``bn1`` folds into the stem
        conv when that block has a projection shortcut (then ``x`` feeds nothing but ``bn1``); the final ``bn``
        becomes its :class:`ChannelAffine`."""
        first = self.layer1[0]
        if isinstance(first.bn1, nn.BatchNorm2d):
            first.bn1 = to_affine(first.bn1)
        if first.shortcut is not None and isinstance(first.bn1, ChannelAffine) and isinstance(self.conv1, nn.Conv2d):
            self.conv1 = fold_affine(self.conv1, first.bn1.weight.detach(), first.bn1.bias.detach())
            first.bn1 = nn.Identity()
        if isinstance(getattr(self, "bn", None), nn.BatchNorm2d):  # a features_only net has no head
            self.bn = to_affine(self.bn)
        self.deploy = True
        return self.use_channels_last(self.channels_last)


def wrn_cifar(depth: int = 28, widen_factor: int = 10, dropout: float = 0.0, **kwargs) -> WideResNet:
    """WRN-``depth``-``widen_factor`` (10 classes unless ``num_classes``), ``dropout`` between each block's convs."""
    return WideResNet(depth=depth, widen_factor=widen_factor, dropout=dropout, **kwargs)


_NOTES = ("CIFAR-10 error (mean/std preprocessing, median of 5 runs) as top1 = 100 - error: the README's 4.00 "
          "(WRN-28-10) and 3.89 (-dropout, 0.3 between the convs); WRN-16-8: the paper's table, 4.27. ResNeXt's "
          "Table 7 quotes WRN-28-10 at 4.17 (36.5M), the older ZCA-preprocessing figure. Params at 10 classes. The "
          "paper prints no MAdds: paper_madds is the count at 32x32. The authors publish no CIFAR weights.")

FAMILY = Family(
    name="wrn_cifar",
    builder=wrn_cifar,
    variants={
        "wrn28_10_cifar": Variant(width=1.0, params=36_479_194, madds=5_243_328_768, paper_params=36.5,
                                  paper_madds=5243, top1=96.0, builder_kwargs=dict(depth=28, widen_factor=10)),
        "wrn28_10_dropout_cifar": Variant(width=1.0, params=36_479_194, madds=5_243_328_768, paper_params=36.5,
                                          paper_madds=5243, top1=96.11,
                                          builder_kwargs=dict(depth=28, widen_factor=10, dropout=0.3)),
        "wrn16_8_cifar": Variant(width=1.0, params=10_961_370, madds=1_548_145_664, paper_params=11.0,
                                 paper_madds=1548, top1=95.73, builder_kwargs=dict(depth=16, widen_factor=8)),
    },
    paper="Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016",
    arxiv="https://arxiv.org/abs/1605.07146",
    code="https://github.com/szagoruyko/wide-residual-networks",
    recipe="wrn_cifar",
    notes=_NOTES,
    extra_kwargs=("dropout",),
    eval_transform=CIFAR_INPUT,
    dataset="CIFAR-10",
)

"""MGIC networks (Eliasof, Ephrath, Ruthotto, Treister, SIAM J. Sci. Comput. 45 (2023) S307-S328, arXiv 2011.09128)
in the layouts of the official ``BGUCompSci/MultigridInChannelsCNNs@23e6c22`` (docs/reference.md "MGIC").

``mgic_resnet18/34``: ``resnetMG.py``'s ``ResNetMGGroup`` with the driver's defaults (group size 32, coarsest width
32, grouped R/P, basic smoothers): ``features.{conv1,bn1,relu1,pooling,Mg_<stage>_<block>}`` and ``linear``; stages of
64-128-256-512 channels at strides 1-2-2-2 after the 7x7/2 stem and max pool. ``mgic_mobilenetv3_large/small``:
``mobilenetv3_MG.py``'s ``mobileMGV3_full`` / ``mobileMGV3_small``: ``conv_stem`` (1x1, stride 1: the official code is
a CIFAR network, 10 classes, total stride 16), ``blocks.<stage>.<block>.ghost1`` MGIC blocks, a last 1x1
``ConvBnAct``, then ``conv_head`` + ReLU at full resolution and global *max* pooling before ``classifier``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..data.transforms import InputSpec
from ..layers.conv_bn_act import ConvBnAct, fold_named_pairs, fuse_tree, init_conv_weights, is_identity
from ..layers.mgic import MGICBlock, make_divisible8
from .base import ClassifierNet, finish_plain_net
from .family import Family, Variant

RESNET_CHANNELS = (64, 128, 256, 512)
RESNET_STRIDES = (1, 2, 2, 2)
RESNET_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
# (k, t, c, SE, HS, s) per block, one list per official stage (mobileMGV3_full / mobileMGV3_small)
MBV3_LARGE = (
    ((3, 1, 16, 0, 0, 1),), ((3, 4, 24, 0, 0, 2),), ((3, 3, 24, 0, 0, 1),), ((5, 3, 40, 1, 0, 2),),
    ((5, 3, 40, 1, 0, 1),), ((5, 3, 40, 1, 0, 1),),
    ((3, 6, 80, 0, 1, 2), (3, 2.5, 80, 0, 1, 1), (3, 2.3, 80, 0, 1, 1), (3, 2.3, 80, 0, 1, 1)),
    ((3, 6, 112, 1, 1, 1),),
    ((3, 6, 112, 1, 1, 1), (5, 6, 160, 1, 1, 2), (5, 6, 160, 1, 1, 1), (5, 6, 160, 1, 1, 1)),
)
MBV3_SMALL = (
    ((3, 1, 16, 1, 0, 2),), ((3, 4.5, 24, 0, 0, 2),), ((3, 3.67, 24, 0, 0, 1),),
    ((5, 4, 40, 1, 1, 2), (5, 6, 40, 1, 1, 1), (5, 6, 40, 1, 1, 1)),
    ((5, 3, 48, 1, 1, 1), (5, 3, 48, 1, 1, 1)),
    ((5, 6, 96, 1, 1, 2), (5, 6, 96, 1, 1, 1), (5, 6, 96, 1, 1, 1)),
)
MBV3_CFGS = {"large": (MBV3_LARGE, 1280), "small": (MBV3_SMALL, 1024)}
# the driver's CIFAR-10 test transform (its own std, not the usual 0.247/0.243/0.261)
MGIC_CIFAR_INPUT = InputSpec(size=32, resize=32, interpolation="bilinear", mean=(0.4914, 0.4822, 0.4465),
                             std=(0.2023, 0.1994, 0.2010))


class MGICNet(ClassifierNet):
    """What both MGIC networks share: the base's argument checks, features_only, and no drop path."""

    supports_features_only = True

    def __init__(self, *, default_input_size: tuple[int, int], num_classes: int, width: float = 1.0,
                 in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 channels_last: bool = True) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, width=width, deploy=False,
                         channels_last=channels_last, drop_path_rate=drop_path_rate,
                         default_input_size=default_input_size)
        if drop_path_rate:
            raise ValueError("the MGIC V-cycle has no block-level residual to drop: drop_path_rate must be 0")
        self.width = width


class MGICResNet(MGICNet):
    """ResNet-MGIC (official ``ResNet(MgBlockDwGroup, ...)``): everything but the classifier lives in ``features``."""

    head_name = "linear"
    stem_pattern = r"^features\.(conv1|bn1)"
    stage_pattern = r"^features\.Mg_(\d+)"

    def __init__(self, *, depth: int = 18, num_classes: int = 1000, deploy: bool = False, group_size: int = 32,
                 coarsest: int = 32, **kwargs) -> None:
        super().__init__(default_input_size=(224, 224), num_classes=num_classes, **kwargs)
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"MGIC ResNet depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}")
        width, in_chans = self.width, self.in_chans
        chans = [int(round(c * width)) for c in RESNET_CHANNELS]
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv1=nn.Conv2d(in_chans, chans[0], 7, 2, 3, bias=False), bn1=nn.BatchNorm2d(chans[0]),
            relu1=nn.ReLU(), pooling=nn.MaxPool2d(3, 2, 1))
        in_chs, reduction = chans[0], 4
        for s, (chs, n, stride) in enumerate(zip(chans, RESNET_DEPTHS[depth], RESNET_STRIDES), start=1):
            for i in range(n):
                layers[f"Mg_{s}_{i}"] = MGICBlock(in_chs, chs, stride if i == 0 else 1, group_size=group_size,
                                                  coarsest=coarsest)
                in_chs = chs
            reduction *= stride
            self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f"features.Mg_{s}_{n - 1}"))
        self.features = nn.Sequential(layers)
        finish_plain_net(self, in_chs, deploy)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return {"stem": self.stem_pattern, "blocks": self.stage_pattern + ("" if coarse else r"_(\d+)")}

    def stages(self) -> list[tuple[str, nn.Module]]:
        # the stem's modules are stages too: they share ``features`` with the blocks (the official layout)
        return [(f"features.{name}", m) for name, m in self.features.named_children()]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.prepare(x, self.features.conv1.weight)

    def fuse(self) -> MGICResNet:
        fold_named_pairs(self.features, [("conv1", "bn1")])
        self.deploy = True
        return self.use_channels_last(self.channels_last)


class MGICMobileNetV3(MGICNet):
    """MobileNetV3-MGIC (official ``MGMBV3``): MGIC blocks whose levels are grouped inverted residuals."""

    def __init__(self, *, size: str = "large", num_classes: int = 10, deploy: bool = False, group_size: int = 32,
                 coarsest: int = 32, **kwargs) -> None:
        super().__init__(default_input_size=(32, 32), num_classes=num_classes, **kwargs)
        if size not in MBV3_CFGS:
            raise ValueError(f"MGIC MobileNetV3 size must be one of {sorted(MBV3_CFGS)}, got {size!r}")
        width, in_chans, channels_last = self.width, self.in_chans, self.channels_last
        cfgs, self.head_chs = MBV3_CFGS[size]
        in_chs = make_divisible8(16 * width)
        self.conv_stem = nn.Conv2d(in_chans, in_chs, 1, 1, 0, bias=False)
        self.bn1, self.act1 = nn.BatchNorm2d(in_chs), nn.ReLU(inplace=True)
        stages, reduction = [], 1
        for s, cfg in enumerate(cfgs):
            blocks = []
            for k, t, c, se, hs, stride in cfg:
                out_chs = make_divisible8(c * width)
                mid = make_divisible8(in_chs * t * width)
                blocks.append(MGICBottleneck(in_chs, mid, out_chs, k, stride, bool(se), bool(hs), group_size,
                                             coarsest))
                in_chs, reduction = out_chs, reduction * stride
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=in_chs, reduction=reduction, module=f"blocks.{s}"))
        stages.append(nn.Sequential(ConvBnAct(in_chs, in_chs, 1)))
        self.feature_info.append(dict(num_chs=in_chs, reduction=reduction, module=f"blocks.{len(cfgs)}"))
        # features_only taps: the last stage whose output is at each stride
        taps = self.feature_info
        self.feature_info = [f for f, after in zip(taps, taps[1:] + [None])
                             if after is None or after["reduction"] != f["reduction"]]
        self.blocks = nn.Sequential(*stages)
        self.num_features = in_chs
        self.conv_head = nn.Conv2d(in_chs, self.head_chs, 1, 1, 0, bias=True)
        self.act2 = nn.ReLU(inplace=True)
        self.classifier = self.make_head(num_classes)
        init_conv_weights(self)
        for m in self.modules():
            if isinstance(m, nn.Linear):  # the official init
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        if deploy:
            fuse_tree(self)
        self.use_channels_last(channels_last)

    @property
    def head_hidden_size(self) -> int:
        return self.head_chs

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [(f"blocks.{i}", stage) for i, stage in enumerate(self.blocks)]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_stem(self.prepare(x, self.conv_stem.weight))
        return self.act1(x if is_identity(self.bn1) else self.bn1(x))

    def forward_pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``conv_head`` + ReLU at full resolution, then global max pooling (the official head)."""
        return torch.flatten(F.adaptive_max_pool2d(self.act2(self.conv_head(x)), 1), 1)

    def fuse(self) -> MGICMobileNetV3:
        fold_named_pairs(self, [("conv_stem", "bn1")])
        self.deploy = True
        return self.use_channels_last(self.channels_last)


class MGICBottleneck(nn.Module):
    """The official ``MGBottleneck``: a wrapper holding the MGIC block as ``ghost1``."""

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, kernel_size: int, stride: int, use_se: bool,
                 use_hs: bool, group_size: int, coarsest: int) -> None:
        super().__init__()
        self.ghost1 = MGICBlock(in_chs, out_chs, stride, kind="mbv3", mid_chs=mid_chs, kernel_size=kernel_size,
                                group_size=group_size, coarsest=coarsest, use_se=use_se, use_hs=use_hs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ghost1(x)


def mgic_resnet(depth: int = 18, **kwargs) -> MGICResNet:
    """ResNet-MGIC of ``depth`` 18 or 34 (basic V-cycle blocks, 1000 classes)."""
    return MGICResNet(depth=depth, **kwargs)


def mgic_mobilenetv3(size: str = "large", **kwargs) -> MGICMobileNetV3:
    """MobileNetV3-MGIC, ``size`` "large" or "small" (the official CIFAR network, 10 classes by default)."""
    return MGICMobileNetV3(size=size, **kwargs)


_NAN = float("nan")
_PAPER = ("Eliasof, Ephrath, Ruthotto, Treister, MGIC: Multigrid-in-Channels Neural Network Architectures, "
          "SIAM J. Sci. Comput. 45 (2023) S307-S328")
_CODE = "https://github.com/BGUCompSci/MultigridInChannelsCNNs"
_NOTES = ("Counts: the official classes built with the driver's defaults (--fixgroups 32 --mgFcChannel 32 "
          "--pwGroup True --bottleneck False). The paper's tables (params, accuracy per configuration) were not "
          "available: paper figures and top-1 are NaN; the abstract reports 76.1% ImageNet top-1 for a "
          "MobileNetV3-sized MGIC network. No weights are published. Deploy form: every BatchNorm folded.")

RESNET_FAMILY = Family(
    name="mgic_resnet",
    builder=mgic_resnet,
    variants={
        "mgic_resnet18": Variant(width=1.0, params=2_770_344, madds=911_632_896, paper_params=_NAN,
                                 paper_madds=_NAN, top1=_NAN, builder_kwargs=dict(depth=18)),
        "mgic_resnet34": Variant(width=1.0, params=4_929_704, madds=1_592_094_720, paper_params=_NAN,
                                 paper_madds=_NAN, top1=_NAN, builder_kwargs=dict(depth=34)),
    },
    paper=_PAPER,
    arxiv="https://arxiv.org/abs/2011.09128",
    code=_CODE,
    recipe="pytorch_imagenet",
    notes=_NOTES + " The driver evaluates ImageNet at Scale(256) -> CenterCrop(224), bilinear.",
    extra_kwargs=("group_size", "coarsest"),
    eval_transform=InputSpec(size=224, resize=256, interpolation="bilinear"),
)

MOBILENET_FAMILY = Family(
    name="mgic_mobilenetv3",
    builder=mgic_mobilenetv3,
    variants={
        "mgic_mobilenetv3_large": Variant(width=1.0, params=3_279_076, madds=18_262_288, paper_params=_NAN,
                                          paper_madds=_NAN, top1=_NAN, builder_kwargs=dict(size="large")),
        "mgic_mobilenetv3_small": Variant(width=1.0, params=1_155_810, madds=5_389_088, paper_params=_NAN,
                                          paper_madds=_NAN, top1=_NAN, builder_kwargs=dict(size="small")),
    },
    paper=_PAPER,
    arxiv="https://arxiv.org/abs/2011.09128",
    code=_CODE,
    recipe="cifar",
    notes=_NOTES + " The official MobileNetV3-MGIC is a CIFAR network (1x1 stride-1 stem, 10 classes, total "
                   "stride 16, max-pooled head); counts at 32x32.",
    extra_kwargs=("group_size", "coarsest"),
    eval_transform=MGIC_CIFAR_INPUT,
    dataset="CIFAR-10",
)

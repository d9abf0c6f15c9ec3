"""ResNet (He et al., CVPR 2016, arXiv 1512.03385) and its Ghost versions (GhostNet, arXiv 1911.11907, Sec. 4.1).

``resnet50``: the ImageNet ResNet-50 in torchvision's layout (stride on the 3x3 conv, 1x1 projection shortcuts), so
torchvision's weights load as they are. ``resnet56_cifar``: the CIFAR ResNet-56 of the paper's Sec. 4 (3x3 stem,
three stages of 9 basic blocks at 16/32/64 channels, parameter-free "option A" shortcuts). ``ghost_*``: the same
networks with every conv but the stem a Ghost module at ratio s (REFERENCE.md §7).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.conv_bn_act import ConvSequence, can_update_in_place, fold_named_pairs, is_identity
from ..layers.drop_path import DropPath
from .family import Family, Variant
from .plain import ConvFactory, PlainClassifier, conv_factory, scaled

CIFAR_STAGES = (16, 32, 64)  # ResNet-56: 9 basic blocks per stage
IMAGENET_STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))  # ResNet-50: (bottleneck width, blocks); out = 4x width
CIFAR_INPUT = dict(input_size=(3, 32, 32), crop_pct=1.0, interpolation="bilinear",
                   mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))


class ZeroPadShortcut(nn.Module):
    """He et al.'s CIFAR "option A": subsample by the stride and zero-pad the new channels; no parameters."""

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.stride, self.pad = stride, out_chs - in_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


def _projection(in_chs: int, out_chs: int, stride: int, conv_layer: ConvFactory) -> ConvSequence:
    return ConvSequence(conv_layer(in_chs, out_chs, 1, stride, 0, bias=False), nn.BatchNorm2d(out_chs))


class _Residual(nn.Module):
    """The residual sum shared by both blocks: ``relu(branch(x) + shortcut(x))`` with optional stochastic depth."""

    def finish(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if not is_identity(self.drop_path):
            out = self.drop_path(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        out = out.add_(shortcut) if can_update_in_place(out) else out + shortcut
        return self.relu(out)


class BasicBlock(_Residual):
    """conv3x3 (stride) -> BN -> ReLU -> conv3x3 -> BN, + shortcut, ReLU (ResNet-56's block)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, conv_layer: ConvFactory, *, option_a: bool,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_layer(in_chs, out_chs, 3, stride, 1, bias=False), nn.BatchNorm2d(out_chs)
        self.conv2, self.bn2 = conv_layer(out_chs, out_chs, 3, 1, 1, bias=False), nn.BatchNorm2d(out_chs)
        self.relu = nn.ReLU(inplace=True)
        if stride == 1 and in_chs == out_chs:
            self.downsample = None
        elif option_a:
            self.downsample = ZeroPadShortcut(in_chs, out_chs, stride)
        else:
            self.downsample = _projection(in_chs, out_chs, stride, conv_layer)
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.finish(self.bn2(self.conv2(out)), x)

    def fuse(self) -> BasicBlock:
        return fold_named_pairs(self, [("conv1", "bn1"), ("conv2", "bn2")])


class Bottleneck(_Residual):
    """conv1x1 -> conv3x3 (stride) -> conv1x1 (4x), each with BN, + shortcut, ReLU (ResNet-50 v1.5, torchvision)."""

    expansion = 4

    def __init__(self, in_chs: int, width: int, stride: int, conv_layer: ConvFactory, *, drop_path: float = 0.0):
        super().__init__()
        out_chs = width * self.expansion
        self.conv1, self.bn1 = conv_layer(in_chs, width, 1, 1, 0, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv_layer(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = conv_layer(width, out_chs, 1, 1, 0, bias=False), nn.BatchNorm2d(out_chs)
        self.relu = nn.ReLU(inplace=True)
        same = stride == 1 and in_chs == out_chs
        self.downsample = None if same else _projection(in_chs, out_chs, stride, conv_layer)
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.finish(self.bn3(self.conv3(out)), x)

    def fuse(self) -> Bottleneck:
        return fold_named_pairs(self, [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")])


class ResNet(PlainClassifier):
    """A ResNet with torchvision's attribute names: ``conv1, bn1, relu, maxpool, layer1..N, fc``."""

    head_name = "fc"

    def __init__(
        self, *, cifar: bool, ghost_ratio: int | None = None, width: float = 1.0, num_classes: int = 1000,
        in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0, deploy: bool = False,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self._setup(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, width=width, deploy=deploy,
                    channels_last=channels_last, drop_path_rate=drop_path_rate,
                    input_size=(32, 32) if cifar else (224, 224))
        conv_layer = conv_factory(ghost_ratio)
        stem_chs = scaled(16 if cifar else 64, width)
        if cifar:  # the stem stays a plain conv in the Ghost versions
            self.conv1 = nn.Conv2d(in_chans, stem_chs, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
            plan = [(scaled(c, width), 9, 1 if i == 0 else 2) for i, c in enumerate(CIFAR_STAGES)]
        else:
            self.conv1 = nn.Conv2d(in_chans, stem_chs, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            plan = [(scaled(c, width), n, 1 if i == 0 else 2) for i, (c, n) in enumerate(IMAGENET_STAGES)]
        self.bn1, self.relu = nn.BatchNorm2d(stem_chs), nn.ReLU(inplace=True)
        n_blocks = sum(n for _, n, _ in plan)
        in_chs, index, reduction = stem_chs, 0, 1 if cifar else 4
        self.feature_info = []
        for s, (chs, n, stride) in enumerate(plan):
            blocks = []
            for j in range(n):
                dpr = drop_path_rate * index / n_blocks
                if cifar:
                    blocks.append(BasicBlock(in_chs, chs, stride if j == 0 else 1, conv_layer, option_a=True,
                                             drop_path=dpr))
                    in_chs = chs
                else:
                    blocks.append(Bottleneck(in_chs, chs, stride if j == 0 else 1, conv_layer, drop_path=dpr))
                    in_chs = chs * Bottleneck.expansion
                index += 1
            reduction *= stride
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=in_chs, reduction=reduction, module=f"layer{s + 1}"))
        self.num_stages = len(plan)
        self._finish(in_chs, deploy)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.prepare(x, self.conv1.weight))
        if not is_identity(self.bn1):
            x = self.bn1(x)
        x = self.maxpool(self.relu(x))
        for s in range(self.num_stages):
            x = getattr(self, f"layer{s + 1}")(x)
        return x

    def fuse(self) -> ResNet:
        fold_named_pairs(self, [("conv1", "bn1")])
        self.deploy = True
        return self.use_channels_last(self.channels_last)


def resnet(cifar: bool = False, ghost_ratio: int | None = None, num_classes: int | None = None, **kwargs) -> ResNet:
    """ResNet-56 (``cifar=True``, 10 classes) or ResNet-50 (1000), optionally with Ghost modules at ``ghost_ratio``."""
    num_classes = (10 if cifar else 1000) if num_classes is None else num_classes
    return ResNet(cifar=cifar, ghost_ratio=ghost_ratio, num_classes=num_classes, **kwargs)


_GHOST_RULE = ("Ghost versions: every conv but the stem is a Ghost module (k x k primary with the conv's stride, "
               "3x3 depthwise cheap op, BN after each); the model's own BN and ReLU follow it unchanged.")
_GHOST56_NOTES = (
    "MAdds: 65.3M counted against the paper's 63M (+3.6 %): the 3x3 primary convs alone are 62.5M, about half of "
    "ResNet-56's 125.5M, which is what the paper's figure amounts to; the cheap depthwise convs add 2.3M and the "
    "plain stem 0.4M. thop/torchstat report 67.5-68M because they also count BN and ReLU."
)
_GHOST50_S2_NOTES = (
    "Params: 14.01M against the paper's 13.0M (+7.7 %; the official Ghost-ResNet-50 file has about 13.9M too): "
    "primary convs 11.72M, cheap convs 0.12M, BN 0.11M, plain stem 0.01M, and the 2.05M classifier that no Ghost "
    "module touches. 13.0M is about half of ResNet-50's 25.6M, as if the classifier were halved as well."
)
_GHOST50_S4_NOTES = (
    "Params: 8.20M against the paper's 6.5M (+26 %): primary convs 5.86M, cheap convs 0.18M, BN 0.11M, plain stem "
    "0.01M and the untouched 2.05M classifier. 6.5M is ResNet-50's 25.6M divided by 4, classifier included; no "
    "Ghost module can reach it while the classifier stays (the paper's MAdds, 1.2B, agree with ours: 1.18B)."
)

CIFAR_FAMILY = Family(
    name="resnet_cifar",
    builder=resnet,
    variants={
        "resnet56_cifar": Variant(1.0, 853_018, 125.49e6, 0.85, 125, 93.0, builder_kwargs=dict(cifar=True)),
        "ghost_resnet56_cifar_s2": Variant(1.0, 442_186, 65.29e6, 0.43, 63, 92.7, notes=_GHOST56_NOTES,
                                           builder_kwargs=dict(cifar=True, ghost_ratio=2)),
    },
    paper="He et al., Deep Residual Learning for Image Recognition, CVPR 2016; Ghost version: Han et al., GhostNet, "
          "CVPR 2020 (Table 3)",
    arxiv="https://arxiv.org/abs/1911.11907",
    code="https://github.com/huawei-noah/Efficient-AI-Backbones",
    recipe="cifar",
    notes="CIFAR-10 top-1 from the paper. " + _GHOST_RULE,
    eval_transform=CIFAR_INPUT,
    dataset="CIFAR-10",
)

FAMILY = Family(
    name="resnet",
    builder=resnet,
    variants={
        "resnet50": Variant(1.0, 25_557_032, 4.089e9, 25.6, 4100, 75.3, 92.2),
        "ghost_resnet50_s2": Variant(1.0, 14_006_504, 2.151e9, 13.0, 2200, 75.0, 92.3, notes=_GHOST50_S2_NOTES,
                                     builder_kwargs=dict(ghost_ratio=2)),
        "ghost_resnet50_s4": Variant(1.0, 8_204_744, 1.182e9, 6.5, 1200, 74.1, 91.9, notes=_GHOST50_S4_NOTES,
                                     builder_kwargs=dict(ghost_ratio=4)),
    },
    paper="He et al., Deep Residual Learning for Image Recognition, CVPR 2016; Ghost versions: Han et al., "
          "GhostNet, CVPR 2020 (Table 5)",
    arxiv="https://arxiv.org/abs/1911.11907",
    code="https://github.com/huawei-noah/Efficient-AI-Backbones",
    recipe="ghostnet",
    notes="ImageNet top-1/top-5 from the paper (torchvision's V1 weights: 76.1). " + _GHOST_RULE,
)

"""VGG-16 for CIFAR (Simonyan & Zisserman, ICLR 2015, arXiv 1409.1556, with BN) and its Ghost versions.

The CIFAR VGG-16 of the GhostNet paper's Table 3 (arXiv 1911.11907, Sec. 4.1): thirteen 3x3 conv-BN-ReLU layers
in five blocks with max pooling, global average pooling and a 512-512-classes MLP classifier (15M parameters, 313M
MAdds at 32 px).
``ghost_vgg16_cifar_s{2,3,4,5}``: every conv but the first is a Ghost module at ratio s.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers.channels import scaled
from ..layers.conv_bn_act import ConvSequence
from ..layers.ghost import ghost_or_plain_conv
from .base import ClassifierNet, finish_plain_net
from .family import Family, Variant
from .resnet import CIFAR_INPUT

# VGG-16 ("D"): channels per 3x3 conv, "M" = 2x2 max pool
VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(ClassifierNet):
    """``features`` (``ConvSequence(conv, bn, relu)`` per conv, ``MaxPool2d``) -> avg pool -> ``classifier``."""

    stem_pattern = r"^features\.0\."
    stage_pattern = r"^features\.([1-9]\d*)"  # features.0 is the stem

    def __init__(
        self, *, ghost_ratio: int | None = None, width: float = 1.0, num_classes: int = 10, in_chans: int = 3,
        drop_rate: float = 0.0, drop_path_rate: float = 0.0, deploy: bool = False, channels_last: bool = True,
    ) -> None:
        if drop_path_rate:
            raise ValueError("VGG has no residual branches for drop_path_rate to drop; use drop_rate")
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, width=width, deploy=False,
                         channels_last=channels_last, drop_path_rate=drop_path_rate, default_input_size=(32, 32))
        conv_layer = ghost_or_plain_conv(ghost_ratio)
        layers: list[nn.Module] = []
        in_chs, reduction = in_chans, 1
        for item in VGG16_CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                reduction *= 2
                tap = f"features.{len(layers) - 1}"
                self.feature_info.append(dict(num_chs=in_chs, reduction=reduction, module=tap))
                continue
            out_chs = scaled(item, width)
            conv = (nn.Conv2d if not layers else conv_layer)(in_chs, out_chs, 3, 1, 1, bias=False)
            layers.append(ConvSequence(conv, nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True)))
            in_chs = out_chs
        self.features = nn.Sequential(*layers)
        finish_plain_net(self, in_chs, deploy)

    def make_head(self, num_classes: int) -> nn.Module:
        """``Linear(512, 512) -> ReLU -> Linear(512, classes)``: the hidden layer the paper's 15M parameters count."""
        if not num_classes:
            return nn.Identity()
        return nn.Sequential(nn.Linear(self.num_features, self.num_features), nn.ReLU(inplace=True),
                             nn.Linear(self.num_features, num_classes))

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [(f"features.{i}", layer) for i, layer in enumerate(self.features)]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.prepare(x, self.features[0][0].weight)  # no stem: the first conv is features.0

    def fuse(self) -> VGG:
        self.deploy = True
        return self.use_channels_last(self.channels_last)


def vgg16_cifar(ghost_ratio: int | None = None, **kwargs) -> VGG:
    """VGG-16 (CIFAR), optionally with Ghost modules at ratio ``ghost_ratio``."""
    return VGG(ghost_ratio=ghost_ratio, **kwargs)


def _ghost(s: int, **figures) -> Variant:
    return Variant(width=1.0, **figures, builder_kwargs=dict(ghost_ratio=s))


FAMILY = Family(
    name="vgg_cifar",
    builder=vgg16_cifar,
    variants={
        "vgg16_cifar": Variant(width=1.0, params=14_986_698, madds=313_463_808, paper_params=15.0,
                               paper_madds=313, top1=93.6),
        "ghost_vgg16_cifar_s2": _ghost(2, params=7_659_370, madds=158_699_520, paper_params=7.7,
                                       paper_madds=158, top1=93.7),
        "ghost_vgg16_cifar_s3": _ghost(3, params=5_227_530, madds=107_995_752, paper_params=5.2,
                                       paper_madds=107, top1=93.4),
        "ghost_vgg16_cifar_s4": _ghost(4, params=3_991_546, madds=81_317_376, paper_params=4.0,
                                       paper_madds=80, top1=93.0),
        "ghost_vgg16_cifar_s5": _ghost(5, params=3_278_924, madds=66_596_112, paper_params=3.3,
                                       paper_madds=65, top1=92.9),
    },
    paper="Simonyan & Zisserman, Very Deep Convolutional Networks, ICLR 2015; Ghost versions: Han et al., GhostNet, "
          "CVPR 2020 (Table 3)",
    arxiv="https://arxiv.org/abs/1911.11907",
    code="https://github.com/huawei-noah/Efficient-AI-Backbones",
    recipe="cifar",
    notes="CIFAR-10 top-1 from the paper. The classifier's hidden 512-wide layer (0.26M) is what brings the 14.7M "
          "conv weights to the paper's 15M, and its Ghost versions to within 1 % of the paper's 7.7/5.2/4.0/3.3M. "
          "Ghost versions: every conv but the first is a Ghost module (3x3 primary, "
          "3x3 depthwise cheap op, BN after each); the model's own BN and ReLU follow it unchanged.",
    eval_transform=CIFAR_INPUT,
    dataset="CIFAR-10",
)

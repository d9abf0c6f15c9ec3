"""ResNeXt-29 for CIFAR (Xie, Girshick, Dollar, Tu, He, CVPR 2017, arXiv 1611.05431, Sec. 5.3 and Table 7).

facebookresearch/ResNeXt ``models/resnext.lua`` (docs/reference.md, "CIFAR ResNeXt-29"), built on the ResNet skeleton
(models/resnet.py): a 3x3 stem conv 3 -> 64 with BN and ReLU, three stages of (29 - 2) / 9 = 3 grouped bottlenecks
(layers/resnet_blocks.py's ``Bottleneck``: 1x1 -> 3x3 with C groups and the stride -> 1x1 to 4x, inner width
``floor(planes * 64 / 64) * C``) at 64/128/256 planes (256/512/1024 out), strides 1, 2, 2; 1x1 conv + BN "type B"
shortcuts where the width changes; global average pool -> Linear(1024).
"""

from __future__ import annotations

from ..layers.resnet_blocks import Bottleneck
from .family import Family, Variant
from .resnet import CIFAR_INPUT, ResNet

DEPTHS = (3, 3, 3)  # ResNeXt-29: (29 - 2) / 9 blocks per stage
PLANES = (64, 128, 256)  # the Lua's ``features``; out = 4x
STEM_CHS = 64
BASE_WIDTH = 64  # the "64d" of 8x64d / 16x64d


def resnext_cifar(cardinality: int = 8, base_width: int = BASE_WIDTH, num_classes: int = 10, **kwargs) -> ResNet:
    """ResNeXt-29 (``cardinality`` x ``base_width``d) for 32 px inputs, 10 classes unless ``num_classes``."""
    if isinstance(cardinality, bool) or not isinstance(cardinality, int) or cardinality < 1:
        raise ValueError(f"cardinality C (groups of the 3x3 conv) must be an integer >= 1, got {cardinality!r}")
    if isinstance(base_width, bool) or not isinstance(base_width, int) or base_width < 1:
        raise ValueError(f"base_width d (channels per group at 64 planes, the 64 of 8x64d) must be an integer >= 1, "
                         f"got {base_width!r}")
    return ResNet(block=Bottleneck, depths=DEPTHS, planes=PLANES, stem="cifar", stem_chs=STEM_CHS,
                  block_kwargs=dict(groups=cardinality, base_width=base_width), num_classes=num_classes, **kwargs)


_NOTES = ("CIFAR-10 error from the paper's Table 7 (average of 10 runs) as top1 = 100 - error: 3.65 (8x64d) and 3.58 "
          "(16x64d). The paper's CIFAR runs used pre-activation blocks and batch 256 (the official README); this is "
          "the official Lua's post-activation block. Params at 10 classes; paper_madds is the count at 32x32 (the "
          "paper prints none for CIFAR). No CIFAR weights are published by the authors.")

FAMILY = Family(
    name="resnext_cifar",
    builder=resnext_cifar,
    variants={
        "resnext29_8x64d_cifar": Variant(width=1.0, params=34_426_698, madds=5_387_266_048, paper_params=34.4,
                                         paper_madds=5387, top1=96.35, builder_kwargs=dict(cardinality=8)),
        "resnext29_16x64d_cifar": Variant(width=1.0, params=68_155_210, madds=10_688_866_304, paper_params=68.1,
                                          paper_madds=10689, top1=96.42, builder_kwargs=dict(cardinality=16)),
    },
    paper="Xie et al., Aggregated Residual Transformations for Deep Neural Networks, CVPR 2017 (Table 7)",
    arxiv="https://arxiv.org/abs/1611.05431",
    code="https://github.com/facebookresearch/ResNeXt",
    recipe="resnext_cifar",
    notes=_NOTES,
    eval_transform=CIFAR_INPUT,
    dataset="CIFAR-10",
)

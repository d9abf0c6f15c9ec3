"""SKNet-50 (Li, Wang, Hu, Yang, "Selective Kernel Networks", CVPR 2019, arXiv 1903.06586, Table 1): ResNeXt-50
32x4d with every bottleneck's 3x3 conv a Selective Kernel conv (M = 2, G = 32, r = 16, L = 32).

Built on the ResNet skeleton (:class:`~ghostnets.models.resnet.ResNet`: torchvision's ``conv1, bn1, layer1..4,
fc``) with :class:`~ghostnets.layers.selective_kernel.SKBottleneck`, in the key layout of timm's
``skresnext50_32x4d`` ("should be equivalent to the SKNet-50 model in the Select Kernel Paper"), whose state dict
loads as it is (docs/reference.md, SKNet).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from ..layers.selective_kernel import MIN_ATTN_CHS, REDUCTION, SKBottleneck
from .family import Family, Variant
from .resnet import IMAGENET_STAGES, ResNet

DEPTHS_50 = tuple(n for _, n in IMAGENET_STAGES)  # (3, 4, 6, 3)
PLANES = tuple(c for c, _ in IMAGENET_STAGES)  # (64, 128, 256, 512); inner widths 128 ... 1024 at 32x4d


def skresnet(depths: Sequence[int] = DEPTHS_50, *, groups: int = 32, base_width: int = 4, num_paths: int = 2,
             reduction: float = REDUCTION, min_attn_chs: int = MIN_ATTN_CHS,
             attn_layer: Callable[[int], nn.Module] | None = None, **kwargs) -> ResNet:
    """An SK-ResNeXt: SKNet-50 by default (``groups`` x ``base_width`` = 32x4d, M = ``num_paths`` = 2)."""
    block_kwargs = dict(groups=groups, base_width=base_width, num_paths=num_paths, reduction=reduction,
                        min_attn_chs=min_attn_chs, attn_layer=attn_layer)
    return ResNet(block=SKBottleneck, depths=tuple(depths), planes=PLANES, block_kwargs=block_kwargs, **kwargs)


FAMILY = Family(
    name="skresnet",
    builder=skresnet,
    variants={
        # SKNet README Table 2: SKNet-50 20.79 top-1 error at 224 (19.32 at 320), 27.5M, 4.47 GFLOPs
        "skresnext50_32x4d": Variant(
            width=1.0, params=27_479_784, madds=4_462_710_784, paper_params=27.5, paper_madds=4470, top1=79.21,
            notes="Params: 27.48M (timm's skresnext50_32x4d, the same count) against the README's 27.5M. No "
                  "weights: the official release is Caffe only (implus/SKNet), and timm's ra_in1k weights are on "
                  "the Hugging Face hub without a direct URL in timm's pretrained_cfg.",
        ),
    },
    paper="Li, Wang, Hu, Yang, Selective Kernel Networks, CVPR 2019",
    arxiv="https://arxiv.org/abs/1903.06586",
    code="https://github.com/implus/SKNet",
    recipe="resnet_imagenet",
    notes="Top-1 is the official README's single-crop 224 figure (100 - 20.79). The paths are 3x3 convs with "
          "dilation 1 and 2 (the paper's 5x5 replaced by a dilated 3x3); d = max(C/16, 32).",
)

"""ResNeXt (Xie et al., CVPR 2017, arXiv 1611.05431) and Wide ResNet-50-2 (Zagoruyko & Komodakis, BMVC 2016, arXiv
1605.07146) on ImageNet, in torchvision's layout: ResNet-50/101's skeleton (models/resnet.py) with the grouped
bottleneck of layers/resnet_blocks.py, so torchvision's ``resnext50_32x4d``, ``resnext101_32x8d`` and
``wide_resnet50_2`` state dicts load as they are.

``CxDd``: cardinality C (groups of the 3x3 conv) and bottleneck width D per group at the first stage; the inner width
of a stage with ``planes`` is ``int(planes * D / 64) * C`` (torchvision's rule). Wide ResNet-50-2 is the same net with
C = 1 and D = 128: every bottleneck's inner width doubled (docs/reference.md, ResNeXt and Wide ResNet).
"""

from __future__ import annotations

from ..data.transforms import TORCHVISION_EVAL
from ..layers.resnet_blocks import Bottleneck
from .family import Family, Variant, Weights
from .resnet import IMAGENET_STAGES, ResNet

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}  # bottlenecks per stage (ResNet's Table 1)
PLANES = tuple(c for c, _ in IMAGENET_STAGES)  # 64, 128, 256, 512; stage outputs 4x


def resnext(depth: int = 50, cardinality: int = 32, base_width: int = 4, **kwargs) -> ResNet:
    """ResNeXt-``depth`` (``cardinality`` x ``base_width``d); ``cardinality=1, base_width=128``: Wide ResNet-N-2.

    Other arguments go to :class:`~ghostnets.models.resnet.ResNet` (``width`` scales the planes; the cardinality
    must divide every resulting inner width).
    """
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {sorted(DEPTHS)} (ResNet-50/101's stages), got {depth!r}")
    if isinstance(base_width, bool) or not isinstance(base_width, int) or base_width < 1:
        raise ValueError(f"base_width (D, channels per group) must be an integer >= 1, got {base_width!r}")
    return ResNet(block=Bottleneck, depths=DEPTHS[depth], planes=PLANES,
                  block_kwargs=dict(groups=cardinality, base_width=base_width), **kwargs)


_TV = "https://download.pytorch.org/models/"
_TV_NOTES = ("Weights and their top-1 are torchvision's IMAGENET1K_V1 ({v1}, evaluated bilinear 256 -> 224); "
             "its IMAGENET1K_V2 file ({v2}) reaches {acc2} evaluated with resize 232. Params/MAdds are torchvision's "
             "(meta num_params, _ops GMACs). ")
_SKELETON = ("torchvision's layout and counts (conv1, bn1, layer1..4, fc; its state dicts load strictly); stride on "
             "the 3x3 conv (ResNet v1.5). deploy=True folds every BatchNorm.")

FAMILY = Family(
    name="resnext",
    builder=resnext,
    variants={
        "resnext50_32x4d": Variant(
            width=1.0, params=25_028_904, madds=4_230_479_872, paper_params=25.0, paper_madds=4200, top1=77.8,
            weights=Weights(url=_TV + "resnext50_32x4d-7cdf4587.pth", top1=77.618),
            builder_kwargs=dict(depth=50, cardinality=32, base_width=4),
            notes=_TV_NOTES.format(v1="77.618 / 93.698", v2=_TV + "resnext50_32x4d-1a0047aa.pth", acc2=81.198)
            + "Top-1 77.8: the official README's 22.2 % single-crop error (Torch); the paper's Table 1 gives 25.0M "
              "params and 4.2 GFLOPs (README: ~4.1)."),
        "resnext101_32x8d": Variant(
            width=1.0, params=88_791_336, madds=16_414_015_488, paper_params=88.8, paper_madds=16414, top1=79.312,
            top5=94.526, weights=Weights(url=_TV + "resnext101_32x8d-8ba56ff5.pth", top1=79.312),
            builder_kwargs=dict(depth=101, cardinality=32, base_width=8),
            notes=_TV_NOTES.format(v1="79.312 / 94.526", v2=_TV + "resnext101_32x8d-110c445d.pth", acc2=82.834)
            + "The ResNeXt paper and README publish no ImageNet-1k ResNeXt-101 32x8d (they have 32x4d: 21.2 % and "
              "64x4d: 20.4 % error), so every figure of this card is torchvision's."),
    },
    paper="Xie, Girshick, Dollar, Tu, He, Aggregated Residual Transformations for Deep Neural Networks, CVPR 2017",
    arxiv="https://arxiv.org/abs/1611.05431",
    code="https://github.com/facebookresearch/ResNeXt",
    recipe="resnext",
    notes=_SKELETON + " The recipe is torchvision's ResNeXt recipe (references/classification), with which its "
                      "IMAGENET1K_V1 weights were trained.",
    eval_transform=TORCHVISION_EVAL,
)

WIDE_FAMILY = Family(
    name="wide_resnet",
    builder=resnext,
    variants={
        "wide_resnet50_2": Variant(
            width=1.0, params=68_883_240, madds=11_398_021_120, paper_params=68.9, paper_madds=11398, top1=78.1,
            top5=94.21, weights=Weights(url=_TV + "wide_resnet50_2-95faca4d.pth", top1=78.468),
            builder_kwargs=dict(depth=50, cardinality=1, base_width=128),
            notes=_TV_NOTES.format(v1="78.468 / 94.086", v2=_TV + "wide_resnet50_2-9ba9bcbe.pth", acc2=81.602)
            + "Top-1/top-5 78.1 / 94.21: the WRN README's WRN-50-2-bottleneck, 21.9 % / 5.79 % single-crop error; "
              "its pretrained/README.md gives 21.9 / 6.03 with 68.9M params (the paper's tables differ in the same "
              "way). No MAdds are published there: paper_madds is torchvision's 11.398 GMACs. The V1 file was trained "
              "with SGD, cosine warm restarts, 256 epochs, fp16 (vision PR #912), not with this card's recipe."),
    },
    paper="Zagoruyko, Komodakis, Wide Residual Networks, BMVC 2016",
    arxiv="https://arxiv.org/abs/1605.07146",
    code="https://github.com/szagoruyko/wide-residual-networks",
    recipe="resnext",
    notes=_SKELETON + " ResNet-50 with every bottleneck's inner width doubled (torchvision: width_per_group=128).",
    eval_transform=TORCHVISION_EVAL,
)

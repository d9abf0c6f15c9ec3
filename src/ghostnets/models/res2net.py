"""Res2Net-50 (Gao, Cheng, Zhao, Zhang, Yang, Torr, "Res2Net: A New Multi-scale Backbone Architecture", TPAMI 2021,
arXiv 1904.01169): ResNet-50 with every bottleneck a hierarchical-split :class:`~ghostnets.layers.res2net.Bottle2neck`
of width w and scale s ("26w_4s": w = 26, s = 4).

Built on the ResNet skeleton (:class:`~ghostnets.models.resnet.ResNet`); the keys are the official
``Res2Net/Res2Net-PretrainedModels`` ones (timm's ``res2net50_*`` use the same), so the released files load as they
are (docs/reference.md, Res2Net).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from ..data.transforms import InputSpec
from ..layers.res2net import Bottle2neck
from .family import Family, Variant, Weights
from .resnet import IMAGENET_STAGES, ResNet

DEPTHS_50 = tuple(n for _, n in IMAGENET_STAGES)  # (3, 4, 6, 3)
PLANES = tuple(c for c, _ in IMAGENET_STAGES)  # (64, 128, 256, 512)
# the official model_urls (Res2Net-PretrainedModels res2net.py; the same files timm first released)
RELEASE = "https://shanghuagao.oss-cn-beijing.aliyuncs.com/res2net/"
# the official evaluation is the PyTorch ImageNet example's: bilinear resize 256 -> center crop 224
OFFICIAL_EVAL = InputSpec(interpolation="bilinear")


def res2net(depths: Sequence[int] = DEPTHS_50, *, base_width: int = 26, scale: int = 4, groups: int = 1,
            attn_layer: Callable[[int], nn.Module] | None = None, **kwargs) -> ResNet:
    """A Res2Net of chunk width ``base_width`` (w) and ``scale`` (s); ``groups`` > 1: Res2NeXt."""
    block_kwargs = dict(base_width=base_width, scale=scale, groups=groups, attn_layer=attn_layer)
    return ResNet(block=Bottle2neck, depths=tuple(depths), planes=PLANES, block_kwargs=block_kwargs, **kwargs)


def _variant(w: int, s: int, params: int, madds: int, paper_params: float, err: tuple[float, float],
             file: str) -> Variant:
    """A Res2Net-50 of the official README table (params in M, 4.2 GMACs, top-1/top-5 error)."""
    top1, top5 = round(100 - err[0], 2), round(100 - err[1], 2)
    return Variant(width=1.0, params=params, madds=madds, paper_params=paper_params, paper_madds=4200, top1=top1,
                   top5=top5, builder_kwargs=dict(base_width=w, scale=s),
                   weights=Weights(url=RELEASE + file, top1=top1))


FAMILY = Family(
    name="res2net",
    builder=res2net,
    variants={
        "res2net50_26w_4s": _variant(26, 4, 25_699_120, 4_255_166_464, 25.70, (22.01, 6.15),
                                     "res2net50_26w_4s-06e79181.pth"),
        "res2net50_48w_2s": _variant(48, 2, 25_287_304, 4_159_832_064, 25.29, (22.68, 6.47),
                                     "res2net50_48w_2s-afed724a.pth"),
        "res2net50_14w_8s": _variant(14, 8, 25_059_816, 4_178_898_944, 25.06, (21.86, 6.14),
                                     "res2net50_14w_8s-6527dddc.pth"),
    },
    paper="Gao, Cheng, Zhao, Zhang, Yang, Torr, Res2Net: A New Multi-scale Backbone Architecture, TPAMI 2021",
    arxiv="https://arxiv.org/abs/1904.01169",
    code="https://github.com/Res2Net/Res2Net-PretrainedModels",
    recipe="resnet_imagenet",
    notes="Figures and top-1/top-5 (100 - error) from the official README; the weights are the official release "
          "files, licensed CC BY-NC-SA 4.0 (non-commercial use only). The first block of every stage adds no "
          "hierarchy and average-pools its last chunk (the official stype='stage').",
    eval_transform=OFFICIAL_EVAL,
)

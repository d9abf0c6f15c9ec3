"""GhostNetV3: Liu et al., "GhostNetV3: Exploring the Training Strategies for Compact Models", arXiv 2404.11202.

GhostNetV2's table, skeleton and DFC attention; every conv of the Ghost modules and the stride-2 depthwise conv is
trained as re-parameterizable branches (:mod:`ghostnets.layers.ghost_v3`), and the network is trained with
knowledge distillation (the ``ghostnetv3`` recipe; ``teacher=`` in the trainer). ``reparameterize`` (or
``deploy=True``) gives GhostNetV2's deploy form. Facts and counts: docs/reference.md "GhostNetV3".
"""

from __future__ import annotations

from functools import partial

from ..layers import make_divisible
from ..layers.ghost_v3 import NUM_BRANCHES, GhostBottleneckV3
from .family import Family, Variant, Weights
from .ghostnet import FINAL_CHS, GHOSTNET_TABLE
from .ghostnetv2 import FIRST_DFC_BLOCK
from .skeleton import GhostFamilyNet

RELEASES = "https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download/GhostNetV3"


def _ghostv3_block(index, in_chs, mid_chs, out_chs, k, stride, se_ratio, drop_path, deploy, *,
                   num_branches: int) -> GhostBottleneckV3:
    return GhostBottleneckV3(in_chs, mid_chs, out_chs, k, stride, se_ratio=se_ratio,
                             use_dfc=index >= FIRST_DFC_BLOCK, num_branches=num_branches, drop_path=drop_path,
                             deploy=deploy)


def official_bn_names(state_dict: dict) -> dict:
    """The official GhostNetV3 files name each branch's BatchNorm ``bn``; timm (and ghostnets) say ``bn1``."""
    return {k.replace(".bn.", ".bn1.") if "_rpr_" in k else k: v for k, v in state_dict.items()}


def ghostnetv3(width: float = 1.0, *, num_branches: int = NUM_BRANCHES, **kwargs) -> GhostFamilyNet:
    """GhostNetV3 at any ``width`` (published: 0.5, 1.0, 1.3, 1.6); ``num_branches``: parallel conv+BN branches per
    conv in training form (the paper's ablation; 3 in the released models)."""
    block = partial(_ghostv3_block, num_branches=num_branches)
    return GhostFamilyNet(GHOSTNET_TABLE, block, make_divisible(FINAL_CHS * width, 4), width=width,
                          he_init=False, **kwargs)


def _variant(*, deploy_madds: int, **kwargs) -> Variant:
    return Variant(recipe="ghostnetv3", notes=f"Deploy form (the official conversion) {kwargs['deploy_params']:,} "
                   f"params, {deploy_madds:,} MAdds at 224, GhostNetV2's architecture.", **kwargs)


FAMILY = Family(
    name="ghostnetv3",
    builder=ghostnetv3,
    variants={
        # params/madds: the training form (every branch counted); deploy_params: the official reparameterize()
        "ghostnetv3_050": _variant(width=0.5, params=3_395_384, madds=117_528_000, deploy_params=2_853_176,
                                   deploy_madds=49_640_656, paper_params=2.7, paper_madds=48, top1=69.4),
        "ghostnetv3_100": _variant(width=1.0, params=8_129_028, madds=404_128_320, deploy_params=6_147_588,
                                   deploy_madds=167_048_288, paper_params=6.1, paper_madds=170, top1=77.1,
                                   weights=Weights(url=f"{RELEASES}/ghostnetv3-1.0.pth.tar", top1=77.13,
                                                   use_ema=True)),
        "ghostnetv3_130": _variant(width=1.3, params=12_217_720, madds=654_842_824, deploy_params=8_948_296,
                                   deploy_madds=269_322_976, paper_params=8.9, paper_madds=269, top1=79.1),
        "ghostnetv3_160": _variant(width=1.6, params=17_275_700, madds=971_574_612, deploy_params=12_377_778,
                                   deploy_madds=398_607_224, paper_params=12.3, paper_madds=400, top1=80.4),
    },
    paper="Liu et al., GhostNetV3: Exploring the Training Strategies for Compact Models, arXiv 2024",
    arxiv="https://arxiv.org/abs/2404.11202",
    code="https://github.com/huawei-noah/Efficient-AI-Backbones/tree/master/ghostnetv3_pytorch",
    recipe="ghostnetv3",
    notes="Top-1 with distillation: 1.3x from the abstract, the others as other papers quote them (docs/reference.md). "
          "Card params and MAdds count the training form's branches. ghostnets' deploy form folds every BatchNorm, "
          "the DFC, shortcut and stem ones too, so it has fewer params than the official conversion.",
    extra_kwargs=("num_branches",),
    state_dict_filter=official_bn_names,
)

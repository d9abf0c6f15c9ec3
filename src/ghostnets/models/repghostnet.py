"""RepGhostNet: Chen et al., "RepGhost: A Hardware-Efficient Ghost Module via Re-parameterization", arXiv 2211.06088.

GhostNet's k/out/SE/stride columns with the expansion halved (no concat), blocks 6.1/6.2 at 120, and a last 1x1
stage twice as wide. Ablations of the paper through keyword arguments: ``reparam_bn=False, reparam_identity=True``
(identity fusion branch without BN), ``reparam_bn=False`` (no fusion branch), ``shortcut=False`` (no shortcut).
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from ..layers import RepGhostBottleneck, RepGhostModule, make_divisible
from .family import Family, Variant, Weights
from .skeleton import GhostFamilyNet, StageTable

#         k, exp, out,   SE, stride
REPGHOSTNET_TABLE: StageTable = (
    ((3, 8, 16, 0.0, 1),),
    ((3, 24, 24, 0.0, 2),),
    ((3, 36, 24, 0.0, 1),),
    ((5, 36, 40, 0.25, 2),),
    ((5, 60, 40, 0.25, 1),),
    ((3, 120, 80, 0.0, 2),),
    ((3, 100, 80, 0.0, 1), (3, 120, 80, 0.0, 1), (3, 120, 80, 0.0, 1), (3, 240, 112, 0.25, 1), (3, 336, 112, 0.25, 1)),
    ((5, 336, 160, 0.25, 2),),
    ((5, 480, 160, 0.0, 1), (5, 480, 160, 0.25, 1), (5, 480, 160, 0.0, 1), (5, 480, 160, 0.25, 1)),
)
FINAL_CHS = 480 * 2


def _repghost_block(index, in_chs, mid_chs, out_chs, k, stride, se_ratio, drop_path, deploy, **options):
    return RepGhostBottleneck(
        in_chs, mid_chs, out_chs, k, stride, se_ratio=se_ratio, drop_path=drop_path, deploy=deploy, **options
    )


def repghostnet(
    width: float = 1.0, *, shortcut: bool = True, reparam_bn: bool = True, reparam_identity: bool = False, **kwargs
) -> GhostFamilyNet:
    """RepGhostNet at any ``width`` (published: 0.5, 0.58, 0.8, 1.0, 1.11, 1.3, 1.5, 2.0)."""
    block = partial(_repghost_block, shortcut=shortcut, reparam_bn=reparam_bn, reparam_identity=reparam_identity)
    return GhostFamilyNet(REPGHOSTNET_TABLE, block, make_divisible(FINAL_CHS * width, 4), width=width, **kwargs)


def lift_official_deploy_file(model: nn.Module, state_dict: dict) -> dict | None:
    """Rewrite an official RepGhost deploy file (fused ``cheap_operation.weight/bias``, no ``fusion_bn``) into the
    training-form layout of ``model`` with an identity BN and zeroed fusion BNs: the same function, exactly loadable."""
    out = dict(state_dict)
    lifted = False
    for name, module in model.named_modules():
        if not isinstance(module, RepGhostModule) or isinstance(module.cheap_operation, nn.Conv2d):
            continue
        p = f"{name}.cheap_operation."
        if p + "weight" not in out:
            continue
        if not all(isinstance(b, nn.BatchNorm2d) for b in module.fusion_bn):
            return None  # a bare identity branch cannot be switched off by weights
        bn = module.cheap_operation[1]
        weight, bias = out.pop(p + "weight"), out.pop(p + "bias")
        ones = torch.ones_like(bias)
        out[p + "0.weight"] = weight
        out.update({p + "1.weight": ones * math.sqrt(1.0 + bn.eps), p + "1.bias": bias, p + "1.running_mean": ones * 0,
                    p + "1.running_var": ones, p + "1.num_batches_tracked": torch.tensor(0)})
        for i, _ in enumerate(module.fusion_bn):
            q = f"{name}.fusion_bn.{i}."
            out.update({q + "weight": ones * 0, q + "bias": ones * 0, q + "running_mean": ones * 0,
                        q + "running_var": ones, q + "num_batches_tracked": torch.tensor(0)})
        lifted = True
    return out if lifted else None


_RELEASES = "https://github.com/ChengpengChen/RepGhost/releases/download/RepGhost"


def _weights(stem: str) -> Weights:
    """The official release ``repghostnet_<stem>.pth.tar``: a training checkpoint whose EMA weights give the paper's
    accuracy, the EMA top-1 (two decimals) closing its name."""
    return Weights(url=f"{_RELEASES}/repghostnet_{stem}.pth.tar", top1=float(stem.rsplit("_", 1)[1]), use_ema=True)


def _variant(**figures) -> Variant:
    recipe = "repghostnet_large" if figures["width"] >= 1.3 else "repghostnet_small"  # RandAugment only from 1.3x up
    return Variant(**figures, recipe=recipe)


FAMILY = Family(
    name="repghostnet",
    builder=repghostnet,
    variants={
        "repghostnet_050": _variant(width=0.5, params=2_313_968, deploy_params=2_306_528, madds=43_314_720,
                                    paper_params=2.3, paper_madds=43, top1=66.9, weights=_weights("0_5x_43M_66.95")),
        "repghostnet_058": _variant(width=0.58, params=2_546_388, deploy_params=2_537_736, madds=59_804_016,
                                    paper_params=2.5, paper_madds=60, top1=68.9, weights=_weights("0_58x_60M_68.94")),
        "repghostnet_080": _variant(width=0.8, params=3_278_968, deploy_params=3_267_112, madds=95_518_948,
                                    paper_params=3.3, paper_madds=96, top1=72.2, weights=_weights("0_8x_96M_72.24")),
        "repghostnet_100": _variant(width=1.0, params=4_073_604, deploy_params=4_058_772, madds=142_394_128,
                                    paper_params=4.1, paper_madds=142, top1=74.2, weights=_weights("1_0x_142M_74.22")),
        "repghostnet_111": _variant(width=1.11, params=4_539_984, deploy_params=4_523_568, madds=170_124_224,
                                    paper_params=4.5, paper_madds=170, top1=75.1, weights=_weights("1_11x_170M_75.07")),
        "repghostnet_130": _variant(width=1.3, params=5_478_612, deploy_params=5_459_316, madds=231_123_652,
                                    paper_params=5.5, paper_madds=231, top1=76.4, weights=_weights("1_3x_231M_76.37")),
        "repghostnet_150": _variant(width=1.5, params=6_575_336, deploy_params=6_553_064, madds=301_315_856,
                                    paper_params=6.6, paper_madds=301, top1=77.5, weights=_weights("1_5x_301M_77.45")),
        "repghostnet_200": _variant(width=2.0, params=9_796_124, deploy_params=9_766_460, madds=515_869_856,
                                    paper_params=9.8, paper_madds=516, top1=78.8, weights=_weights("2_0x_516M_78.81")),
    },
    paper="Chen et al., RepGhost: A Hardware-Efficient Ghost Module via Re-parameterization, arXiv 2022",
    arxiv="https://arxiv.org/abs/2211.06088",
    code="https://github.com/ChengpengChen/RepGhost",
    recipe="repghostnet_small",
    notes="Released files are full training checkpoints; the paper's accuracies are the EMA weights (state_dict_ema).",
    extra_kwargs=("shortcut", "reparam_bn", "reparam_identity"),
    lift_deploy_file=lift_official_deploy_file,
)

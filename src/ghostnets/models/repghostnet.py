"""RepGhostNet: Chen et al., "RepGhost: A Hardware-Efficient Ghost Module via Re-parameterization", arXiv 2211.06088.

GhostNet's k/out/SE/stride columns with the expansion halved (no concat), blocks 6.1/6.2 at 120, and a last 1x1
stage twice as wide. Ablations of the paper through keyword arguments: ``reparam_bn=False, reparam_identity=True``
(identity fusion branch without BN), ``reparam_bn=False`` (no fusion branch), ``shortcut=False`` (no shortcut).
"""

from __future__ import annotations

from functools import partial

from ..layers import RepGhostBottleneck, make_divisible
from .family import Family, Variant
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


def _variant(width, params, deploy_params, madds, paper_params, paper_madds, top1):
    recipe = "repghostnet_large" if width >= 1.3 else "repghostnet_small"  # RandAugment only from 1.3x up
    return Variant(width, params, madds, paper_params, paper_madds, top1, deploy_params=deploy_params, recipe=recipe)


FAMILY = Family(
    name="repghostnet",
    builder=repghostnet,
    variants={
        "repghostnet_050": _variant(0.5, 2_313_968, 2_306_528, 43.3e6, 2.3, 43, 66.9),
        "repghostnet_058": _variant(0.58, 2_546_388, 2_537_736, 59.8e6, 2.5, 60, 68.9),
        "repghostnet_080": _variant(0.8, 3_278_968, 3_267_112, 95.5e6, 3.3, 96, 72.2),
        "repghostnet_100": _variant(1.0, 4_073_604, 4_058_772, 142.4e6, 4.1, 142, 74.2),
        "repghostnet_111": _variant(1.11, 4_539_984, 4_523_568, 170.1e6, 4.5, 170, 75.1),
        "repghostnet_130": _variant(1.3, 5_478_612, 5_459_316, 231.1e6, 5.5, 231, 76.4),
        "repghostnet_150": _variant(1.5, 6_575_336, 6_553_064, 301.3e6, 6.6, 301, 77.5),
        "repghostnet_200": _variant(2.0, 9_796_124, 9_766_460, 515.9e6, 9.8, 516, 78.8),
    },
    paper="Chen et al., RepGhost: A Hardware-Efficient Ghost Module via Re-parameterization, arXiv 2022",
    arxiv="https://arxiv.org/abs/2211.06088",
    code="https://github.com/ChengpengChen/RepGhost",
    recipe="repghostnet_small",
    notes="Released files are full training checkpoints; the paper's accuracies are the EMA weights (state_dict_ema).",
    extra_kwargs=("shortcut", "reparam_bn", "reparam_identity"),
)

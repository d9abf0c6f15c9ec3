"""GhostNet (C-GhostNet): Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020, arXiv 1911.11907.

Table 1 of the paper as data; every channel count is scaled by ``width`` and rounded by ``make_divisible(., 4)``.
"""

from __future__ import annotations

from ..layers import GhostBottleneck, make_divisible
from .family import Family, Variant, Weights
from .skeleton import GhostFamilyNet, StageTable

#         k, exp, out,   SE, stride
GHOSTNET_TABLE: StageTable = (
    ((3, 16, 16, 0.0, 1),),
    ((3, 48, 24, 0.0, 2),),
    ((3, 72, 24, 0.0, 1),),
    ((5, 72, 40, 0.25, 2),),
    ((5, 120, 40, 0.25, 1),),
    ((3, 240, 80, 0.0, 2),),
    ((3, 200, 80, 0.0, 1), (3, 184, 80, 0.0, 1), (3, 184, 80, 0.0, 1), (3, 480, 112, 0.25, 1), (3, 672, 112, 0.25, 1)),
    ((5, 672, 160, 0.25, 2),),
    ((5, 960, 160, 0.0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0.0, 1), (5, 960, 160, 0.25, 1)),
)
FINAL_CHS = 960


def _ghost_block(index, in_chs, mid_chs, out_chs, k, stride, se_ratio, drop_path, deploy) -> GhostBottleneck:
    return GhostBottleneck(in_chs, mid_chs, out_chs, k, stride, se_ratio=se_ratio, drop_path=drop_path, deploy=deploy)


def ghostnet(width: float = 1.0, **kwargs) -> GhostFamilyNet:
    """GhostNet at any ``width`` (published: 0.5, 1.0, 1.3)."""
    return GhostFamilyNet(GHOSTNET_TABLE, _ghost_block, make_divisible(FINAL_CHS * width, 4), width=width, **kwargs)


_RELEASES = "https://github.com/huawei-noah/CV-backbones/releases/download"  # a bare state dict (timm's origin)

FAMILY = Family(
    name="ghostnet",
    builder=ghostnet,
    variants={
        "ghostnet_050": Variant(width=0.5, params=2_587_292, madds=42_328_152, paper_params=2.6,
                                paper_madds=42, top1=66.2, top5=86.6),
        "ghostnet_100": Variant(width=1.0, params=5_182_508, madds=141_150_512, paper_params=5.2,
                                paper_madds=141, top1=73.9, top5=91.4,
                                weights=Weights(url=f"{_RELEASES}/ghostnet_pth/ghostnet_1x.pth", top1=73.98)),
        "ghostnet_130": Variant(width=1.3, params=7_358_820, madds=227_003_256, paper_params=7.3,
                                paper_madds=226, top1=75.7, top5=92.7),
    },
    paper="Han et al., GhostNet: More Features from Cheap Operations, CVPR 2020",
    arxiv="https://arxiv.org/abs/1911.11907",
    code="https://github.com/huawei-noah/Efficient-AI-Backbones/tree/master/ghostnet_pytorch",
    recipe="ghostnet",
    notes="The official PyTorch 1.0x file measures 73.98 top-1 / 91.46 top-5.",
)

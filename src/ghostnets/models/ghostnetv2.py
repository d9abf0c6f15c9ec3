"""GhostNetV2: Tang et al., "GhostNetV2: Enhance Cheap Operation with Long-Range Attention", NeurIPS 2022,
arXiv 2211.12905.

GhostNet's table and skeleton; ``ghost1`` of every bottleneck but the first two carries DFC attention.
"""

from __future__ import annotations

from functools import partial

from ..layers import GhostBottleneck, GhostModule, make_divisible
from .family import Family, Variant, Weights
from .ghostnet import FINAL_CHS, GHOSTNET_TABLE
from .skeleton import GhostFamilyNet

FIRST_DFC_BLOCK = 2  # blocks.0.0 and blocks.1.0 have no DFC attention (official `layer_id <= 1`)


def _ghostv2_block(index, in_chs, mid_chs, out_chs, k, stride, se_ratio, drop_path, deploy) -> GhostBottleneck:
    expand = partial(GhostModule, use_dfc=index >= FIRST_DFC_BLOCK)
    return GhostBottleneck(
        in_chs, mid_chs, out_chs, k, stride, se_ratio=se_ratio, expand_layer=expand, project_layer=GhostModule,
        drop_path=drop_path, deploy=deploy,
    )


PROFILER_KEYS = ("total_ops", "total_params")  # thop's buffers, saved at every module of the official files


def drop_profiler_keys(state_dict: dict) -> dict:
    """The official GhostNetV2 files without the profiler buffers ``total_ops``/``total_params``."""
    return {k: v for k, v in state_dict.items() if k.rsplit(".", 1)[-1] not in PROFILER_KEYS}


def ghostnetv2(width: float = 1.0, **kwargs) -> GhostFamilyNet:
    """GhostNetV2 at any ``width`` (published: 1.0, 1.3, 1.6)."""
    return GhostFamilyNet(GHOSTNET_TABLE, _ghostv2_block, make_divisible(FINAL_CHS * width, 4), width=width, **kwargs)


_RELEASES = "https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download/GhostNetV2"  # bare state dicts

FAMILY = Family(
    name="ghostnetv2",
    builder=ghostnetv2,
    variants={
        "ghostnetv2_100": Variant(width=1.0, params=6_156_908, madds=167_048_288, paper_params=6.1,
                                  paper_madds=167, top1=75.3,
                                  weights=Weights(url=f"{_RELEASES}/ck_ghostnetv2_10.pth.tar", top1=75.3)),
        "ghostnetv2_130": Variant(width=1.3, params=8_960_404, madds=269_322_976, paper_params=8.9,
                                  paper_madds=269, top1=76.9,
                                  weights=Weights(url=f"{_RELEASES}/ck_ghostnetv2_13.pth.tar", top1=76.9)),
        "ghostnetv2_160": Variant(width=1.6, params=12_392_698, madds=398_607_224, paper_params=12.3,
                                  paper_madds=399, top1=77.8,
                                  weights=Weights(url=f"{_RELEASES}/ck_ghostnetv2_16.pth.tar", top1=77.8)),
    },
    paper="Tang et al., GhostNetV2: Enhance Cheap Operation with Long-Range Attention, NeurIPS 2022",
    arxiv="https://arxiv.org/abs/2211.12905",
    code="https://github.com/huawei-noah/Efficient-AI-Backbones/tree/master/ghostnetv2_pytorch",
    recipe="ghostnetv2",
    notes="Official files carry profiler buffers (total_ops/total_params); they are dropped on load.",
    state_dict_filter=drop_profiler_keys,
)

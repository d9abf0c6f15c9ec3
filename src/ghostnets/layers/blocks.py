"""ghostnets' own blocks registered under the shared interface (:mod:`.block_registry`); each block family's file
registers itself, and this module imports them all so :func:`~.block_registry.list_blocks` sees every one."""

from __future__ import annotations

from torch import nn

from . import edgenext_conv, sdta  # noqa: F401  (register "edgenext_conv", "sdta")
from .block_registry import mid_channels, register_block
from .eca import ECAModule  # noqa: F401  (registers "eca")
from .ghost import GhostBottleneck, GhostModule
from .ghost_v3 import GhostBottleneckV3
from .inverted_residual import InvertedResidual  # noqa: F401  (registers "mbv2")
from .mgic import MGICBlock  # noqa: F401  (registers "mgic", "mgic_mbv3")
from .mobilenetv3_block import mbv3_block  # noqa: F401  (registers 'mbv3')
from .repghost import RepGhostBottleneck
from .res2net import Bottle2neck  # noqa: F401  (registers "res2net")
from .resnet_blocks import resnext_block  # noqa: F401  (registers "resnext")
from .se_module import SEModule  # noqa: F401  (registers "se")
from .selective_kernel import SKBottleneck  # noqa: F401  (registers "sk")
from .shufflenet_v1 import ShuffleV1Block  # noqa: F401  (registers "shufflev1")
from .shufflenet_v2 import ShuffleV2Block  # noqa: F401  (registers "shufflev2")
from .wide_basic import WideBasic  # noqa: F401  (registers "wide_basic")

GHOST_KEYWORDS = ("kernel_size", "expansion", "mid_chs", "se_ratio")
DEFAULT_EXPANSION = 3.0  # GhostNet's table runs at 3x-6x; 3 is its most common ratio (mid 48/16, 72/24, 120/40)


@register_block("ghost", honours=GHOST_KEYWORDS, paper="Han et al., GhostNet, CVPR 2020", arxiv="1911.11907",
                summary="Ghost bottleneck: Ghost module expand, [dw stride 2], [SE], Ghost module project, + shortcut")
def ghost_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3, expansion: float | None = None,
                mid_chs: int | None = None, se_ratio: float = 0.0) -> nn.Module:
    return GhostBottleneck(in_chs, mid_channels(in_chs, expansion, mid_chs, DEFAULT_EXPANSION), out_chs, kernel_size,
                           stride, se_ratio=se_ratio)


@register_block("ghostv2", honours=GHOST_KEYWORDS, paper="Tang et al., GhostNetV2, NeurIPS 2022", arxiv="2211.12905",
                summary="Ghost bottleneck whose expanding Ghost module carries DFC attention")
def ghostv2_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3, expansion: float | None = None,
                  mid_chs: int | None = None, se_ratio: float = 0.0) -> nn.Module:
    def expand(i, o, **kw):
        return GhostModule(i, o, use_dfc=True, **kw)

    return GhostBottleneck(in_chs, mid_channels(in_chs, expansion, mid_chs, DEFAULT_EXPANSION), out_chs, kernel_size,
                           stride, se_ratio=se_ratio, expand_layer=expand, project_layer=GhostModule)


@register_block("ghostv3", honours=GHOST_KEYWORDS, paper="Liu et al., GhostNetV3, arXiv 2024", arxiv="2404.11202",
                summary="GhostNetV2's block trained as re-parameterizable conv+BN branches")
def ghostv3_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3, expansion: float | None = None,
                  mid_chs: int | None = None, se_ratio: float = 0.0) -> nn.Module:
    return GhostBottleneckV3(in_chs, mid_channels(in_chs, expansion, mid_chs, DEFAULT_EXPANSION), out_chs,
                             kernel_size, stride, se_ratio=se_ratio, use_dfc=True)


@register_block("repghost", honours=GHOST_KEYWORDS, paper="Chen et al., RepGhost, arXiv 2022", arxiv="2211.06088",
                summary="Ghost bottleneck of RepGhost modules: feature reuse by re-parameterization, no concat")
def repghost_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3,
                   expansion: float | None = None, mid_chs: int | None = None, se_ratio: float = 0.0) -> nn.Module:
    # RepGhostNet halves GhostNet's hidden widths (docs/reference.md §4): the same default expansion, halved
    return RepGhostBottleneck(in_chs, mid_channels(in_chs, expansion, mid_chs, DEFAULT_EXPANSION / 2), out_chs,
                              kernel_size, stride, se_ratio=se_ratio)

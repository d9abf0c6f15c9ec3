"""Building blocks of the GhostNet family, one concept per file."""

from .channels import make_divisible
from .conv_bn_act import ConvBnAct, ConvSequence, absorbs_batchnorm, conv_bn_act, conv_norm, fold_bn
from .deploy_conv import DeployConv2d, plain_convolutions
from .dfc import DFCAttention
from .drop_path import DropPath
from .g_ghost_stage import GGhostStage, g_ghost_split
from .ghost import GhostBottleneck, GhostModule, check_ghost_ratio, ghost_or_plain_conv
from .regnet_blocks import ResBottleneckBlock, XBottleneck, regnet_groups
from .repghost import RepGhostBottleneck, RepGhostModule
from .resnet_blocks import BasicBlock, Bottleneck, ZeroPadShortcut
from .shufflenet_v2 import ShuffleV2Block, channel_shuffle
from .squeeze_excite import SqueezeExcite

GhostConv2d = GhostModule  # the name the drop-in use had before both uses became one class

__all__ = [
    "BasicBlock", "Bottleneck", "ConvBnAct", "ConvSequence", "DFCAttention", "DeployConv2d", "DropPath", "GGhostStage",
    "GhostBottleneck", "GhostConv2d", "GhostModule", "RepGhostBottleneck", "RepGhostModule", "ResBottleneckBlock",
    "SqueezeExcite", "XBottleneck", "ZeroPadShortcut", "absorbs_batchnorm", "check_ghost_ratio", "conv_bn_act",
    "conv_norm", "fold_bn", "g_ghost_split", "ghost_or_plain_conv", "make_divisible", "plain_convolutions",
    "regnet_groups",
    "ShuffleV2Block", "channel_shuffle",
]

from . import blocks  # noqa: E402, F401  (every block file registers itself in the block registry)

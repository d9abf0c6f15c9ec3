"""Building blocks of the GhostNet family, one concept per file."""

from .channels import make_divisible
from .conv_bn_act import ConvBnAct, ConvSequence, absorbs_batchnorm, conv_bn_act, conv_norm, fold_bn
from .deploy_conv import DeployConv2d, plain_convolutions
from .dfc import DFCAttention
from .drop_path import DropPath
from .ghost import GhostBottleneck, GhostModule
from .ghost_conv import GhostConv2d
from .repghost import RepGhostBottleneck, RepGhostModule
from .squeeze_excite import SqueezeExcite

__all__ = [
    "ConvBnAct", "ConvSequence", "DFCAttention", "DeployConv2d", "DropPath", "GhostBottleneck", "GhostConv2d",
    "GhostModule", "RepGhostBottleneck", "RepGhostModule", "SqueezeExcite", "absorbs_batchnorm", "conv_bn_act",
    "conv_norm", "fold_bn", "make_divisible", "plain_convolutions",
]

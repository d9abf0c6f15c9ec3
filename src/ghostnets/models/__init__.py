"""Model families, one file each; ``FAMILIES`` is what the registry registers."""

from .base import ClassifierNet
from .features import FeatureListNet
from .g_ghostnet import FAMILY as G_GHOSTNET
from .g_ghostnet import GGhostRegNet, g_ghost_regnet
from .ghostnet import FAMILY as GHOSTNET
from .ghostnet import ghostnet
from .ghostnetv2 import FAMILY as GHOSTNETV2
from .ghostnetv2 import ghostnetv2
from .ghostnetv3 import FAMILY as GHOSTNETV3
from .ghostnetv3 import ghostnetv3
from .regnet import FAMILY as REGNET
from .regnet import RegNet, regnet
from .repghostnet import FAMILY as REPGHOSTNET
from .repghostnet import repghostnet
from .resnet import CIFAR_FAMILY as RESNET_CIFAR
from .resnet import FAMILY as RESNET
from .resnet import ResNet
from .skeleton import GhostFamilyNet
from .vgg import FAMILY as VGG_CIFAR
from .vgg import VGG

FAMILIES = (GHOSTNET, GHOSTNETV2, GHOSTNETV3, REPGHOSTNET, RESNET_CIFAR, VGG_CIFAR, RESNET, G_GHOSTNET, REGNET)

__all__ = ["FAMILIES", "ClassifierNet", "FeatureListNet", "GGhostRegNet", "GhostFamilyNet", "RegNet", "ResNet", "VGG",
           "g_ghost_regnet", "ghostnet", "ghostnetv2", "ghostnetv3", "regnet", "repghostnet"]

"""Model families, one file each; ``FAMILIES`` is what the registry registers."""

from .base import ClassifierNet
from .features import FeatureListNet
from .ghostnet import FAMILY as GHOSTNET
from .ghostnet import ghostnet
from .ghostnetv2 import FAMILY as GHOSTNETV2
from .ghostnetv2 import ghostnetv2
from .ghostnetv3 import FAMILY as GHOSTNETV3
from .ghostnetv3 import ghostnetv3
from .repghostnet import FAMILY as REPGHOSTNET
from .repghostnet import repghostnet
from .resnet import CIFAR_FAMILY as RESNET_CIFAR
from .resnet import FAMILY as RESNET
from .resnet import ResNet
from .skeleton import GhostFamilyNet
from .vgg import FAMILY as VGG_CIFAR
from .vgg import VGG

FAMILIES = (GHOSTNET, GHOSTNETV2, GHOSTNETV3, REPGHOSTNET, RESNET_CIFAR, VGG_CIFAR, RESNET)

__all__ = ["FAMILIES", "ClassifierNet", "FeatureListNet", "GhostFamilyNet", "ResNet", "VGG", "ghostnet", "ghostnetv2",
           "ghostnetv3", "repghostnet"]

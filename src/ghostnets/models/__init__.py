"""Model families, one file each; ``FAMILIES`` is what the registry registers."""

from .base import ClassifierNet
from .blocknet import FAMILY as BLOCKNET
from .blocknet import BlockNet
from .ecaresnet import FAMILY as ECARESNET
from .edgenext import FAMILY as EDGENEXT
from .edgenext import EdgeNeXt, edgenext
from .features import FeatureListNet
from .g_ghostnet import FAMILY as G_GHOSTNET
from .g_ghostnet import GGhostRegNet, g_ghost_regnet
from .ghostnet import FAMILY as GHOSTNET
from .ghostnet import ghostnet
from .ghostnetv2 import FAMILY as GHOSTNETV2
from .ghostnetv2 import ghostnetv2
from .ghostnetv3 import FAMILY as GHOSTNETV3
from .ghostnetv3 import ghostnetv3
from .mgic import MOBILENET_FAMILY as MGIC_MOBILENETV3
from .mgic import RESNET_FAMILY as MGIC_RESNET
from .mobilenetv2 import FAMILY as MOBILENETV2
from .mobilenetv2 import MobileNetV2, mobilenetv2
from .mobilenetv3 import FAMILY as MOBILENETV3
from .mobilenetv3 import MobileNetV3, mobilenetv3
from .regnet import FAMILY as REGNET
from .regnet import RegNet, regnet
from .repghostnet import FAMILY as REPGHOSTNET
from .repghostnet import repghostnet
from .res2net import FAMILY as RES2NET
from .resnet import CIFAR_FAMILY as RESNET_CIFAR
from .resnet import FAMILY as RESNET
from .resnet import ResNet
from .resnext import FAMILY as RESNEXT
from .resnext import WIDE_FAMILY as WIDE_RESNET
from .resnext_cifar import FAMILY as RESNEXT_CIFAR
from .seresnet import FAMILY as SERESNET
from .shufflenetv1 import FAMILY as SHUFFLENETV1
from .shufflenetv1 import ShuffleNetV1, shufflenetv1
from .shufflenetv2 import FAMILY as SHUFFLENETV2
from .shufflenetv2 import ShuffleNetV2, shufflenetv2
from .skeleton import GhostFamilyNet
from .skresnet import FAMILY as SKRESNET
from .vgg import FAMILY as VGG_CIFAR
from .vgg import VGG
from .wrn_cifar import FAMILY as WRN_CIFAR
from .wrn_cifar import WideResNet, wrn_cifar

FAMILIES = (GHOSTNET, GHOSTNETV2, GHOSTNETV3, REPGHOSTNET, RESNET_CIFAR, VGG_CIFAR, RESNET, G_GHOSTNET, REGNET,
            SHUFFLENETV2, MOBILENETV3, MOBILENETV2, MGIC_RESNET, MGIC_MOBILENETV3, SHUFFLENETV1, EDGENEXT,
            RESNEXT, WIDE_RESNET, RESNEXT_CIFAR, WRN_CIFAR, SERESNET, ECARESNET, SKRESNET, RES2NET, BLOCKNET)

__all__ = ["FAMILIES", "BlockNet", "ClassifierNet", "FeatureListNet", "GGhostRegNet", "GhostFamilyNet", "RegNet",
           "ResNet", "VGG",
           "g_ghost_regnet", "ghostnet", "ghostnetv2", "ghostnetv3", "regnet", "repghostnet",
           "ShuffleNetV2", "shufflenetv2",
           "MobileNetV3", "mobilenetv3",
           "MobileNetV2", "mobilenetv2",
           "ShuffleNetV1", "shufflenetv1",
           "EdgeNeXt", "edgenext",
           "WideResNet", "wrn_cifar"]

"""Model families, one file each; ``FAMILIES`` is what the registry registers."""

from .features import FeatureListNet
from .ghostnet import FAMILY as GHOSTNET
from .ghostnet import ghostnet
from .ghostnetv2 import FAMILY as GHOSTNETV2
from .ghostnetv2 import ghostnetv2
from .repghostnet import FAMILY as REPGHOSTNET
from .repghostnet import repghostnet
from .skeleton import GhostFamilyNet

FAMILIES = (GHOSTNET, GHOSTNETV2, REPGHOSTNET)

__all__ = ["FAMILIES", "FeatureListNet", "GhostFamilyNet", "ghostnet", "ghostnetv2", "repghostnet"]

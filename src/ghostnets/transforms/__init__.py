"""Transforms: every model-to-model change, generic over ``nn.Module`` and recorded so checkpoints replay it.

``reparameterize`` (fold BatchNorm, merge RepGhost branches), ``ghostify`` (Ghost modules for convolutions),
``prune_channels`` (He et al. 2017), ``remove_residuals`` (RMNet, Meng et al. 2021), and the numerical checks
that a deploy form computes what its training form does.
Importing this package registers every replayable edit (:mod:`.edits`).
"""

from .edits import apply_edits, record_edit, register_edit
from .equivalence import is_equivalent, max_output_difference, randomize_batchnorm
from .ghostify import GhostifyReport, ghostify
from .prune import PruneReport, apply_pruned_widths, prune_channels
from .remove_residuals import RemoveResidualsError, remove_residuals
from .reparameterize import reparameterize

__all__ = ["GhostifyReport", "PruneReport", "apply_edits", "apply_pruned_widths", "ghostify", "is_equivalent",
           "max_output_difference", "prune_channels", "randomize_batchnorm", "record_edit", "register_edit",
           "RemoveResidualsError", "remove_residuals", "reparameterize"]

"""ghostnets: the GhostNet family of efficient CNNs, exact and checkpoint-compatible, with deploy and measure tools."""

from .checkpoint import load_checkpoint, read_metadata, read_state_dict, save_checkpoint
from .deploy import reparameterize
from .errors import CheckpointError, GhostnetsError, InputShapeError, UnknownModelError, UnsafeCheckpointError
from .factory import create_model
from .ghostify import ghostify
from .profile import count_madds, count_params
from .registry import ModelCard, list_models, model_info

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "GhostnetsError", "InputShapeError", "ModelCard", "UnknownModelError", "UnsafeCheckpointError",
    "count_madds", "count_params", "create_model", "ghostify", "list_models", "load_checkpoint", "model_info",
    "read_metadata", "read_state_dict", "reparameterize", "save_checkpoint",
]

"""ghostnets: the GhostNet family of efficient CNNs, exact and checkpoint-compatible, with deploy and measure tools."""

from .checkpoint import load_checkpoint, read_metadata, read_state_dict, save_checkpoint
from .counting import count_madds, count_params
from .errors import (
    CheckpointError,
    DownloadError,
    GhostnetsError,
    InputShapeError,
    UnknownModelError,
    UnsafeCheckpointError,
)
from .factory import create_model, ghostify
from .hub import download_weights
from .record import ModelRecord, record_of
from .registry import ModelCard, list_models, model_info
from .transforms import prune_channels, remove_residuals, reparameterize

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "DownloadError", "GhostnetsError", "InputShapeError", "ModelCard", "ModelRecord",
    "UnknownModelError", "UnsafeCheckpointError", "count_madds", "count_params", "create_model", "download_weights",
    "ghostify", "list_models",
    "load_checkpoint", "model_info", "prune_channels", "read_metadata", "read_state_dict", "record_of",
    "remove_residuals", "reparameterize", "save_checkpoint",
]

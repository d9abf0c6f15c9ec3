"""Training and evaluation: recipes as files, a resumable DDP-aware engine, metrics and summaries."""

from .config import ConfigError, TrainConfig, list_recipes, load_recipe, parse_overrides, update_config
from .trainer import RunDirectoryInUse, Trainer, TrainingDiverged, train

__all__ = ["ConfigError", "RunDirectoryInUse", "TrainConfig", "Trainer", "TrainingDiverged", "list_recipes",
           "load_recipe", "parse_overrides", "train", "update_config"]

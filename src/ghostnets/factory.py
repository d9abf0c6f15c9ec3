"""``create_model``: build a registered model, in training or deploy form, optionally from a checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from .checkpoint import load_checkpoint, read_metadata, read_state_dict
from .errors import CheckpointError
from .models import FeatureListNet
from .registry import build_model


def _shape_kwargs(path: str | Path, use_ema: bool | None) -> dict:
    """``num_classes`` and ``in_chans`` as the weights in ``path`` have them (for files without metadata)."""
    state_dict, _ = read_state_dict(path, use_ema=use_ema)
    found = {}
    if "classifier.weight" in state_dict:
        found["num_classes"] = state_dict["classifier.weight"].shape[0]
    if "conv_stem.weight" in state_dict:
        found["in_chans"] = state_dict["conv_stem.weight"].shape[1]
    return found


def create_model(
    name: str | None = None, *, num_classes: int | None = None, in_chans: int | None = None,
    checkpoint_path: str | Path | None = None, deploy: bool | None = None, features_only: bool = False,
    out_indices: Sequence[int] | None = None, pretrained: bool = False, use_ema: bool | None = None, **kwargs,
) -> nn.Module:
    """Build ``name`` (or the model a ghostnets checkpoint records, when ``name`` is omitted).

    ``deploy=True`` builds the re-parameterized form directly. ``checkpoint_path`` loads any layout that
    :func:`ghostnets.load_checkpoint` reads; a deploy-form file yields the deploy form. With a checkpoint,
    ``num_classes`` and ``in_chans`` default to the file's; a different ``num_classes`` keeps the backbone and
    re-initialises the classifier. ``features_only=True`` returns the maps of the last block at each stride
    (``out_indices`` picks among strides 2, 4, 8, 16, 32). Other keyword arguments (``width``, ``drop_rate``,
    ``drop_path_rate``, the RepGhost ablations) go to the family builder.
    """
    if pretrained:
        raise ValueError("ghostnets downloads no weights (model hubs may be unreachable): download the official file "
                         "and pass checkpoint_path=... (every official layout loads as is)")
    meta = read_metadata(checkpoint_path) if checkpoint_path is not None else {}
    if name is None:
        if not meta.get("model"):
            raise CheckpointError("create_model needs a model name unless checkpoint_path is a ghostnets .safetensors "
                                  "file that records it (written by save_checkpoint)")
        name = meta["model"]
    if meta.get("model") == name:
        kwargs = {**meta["kwargs"], **kwargs}
    elif checkpoint_path is not None and (num_classes is None or in_chans is None):
        kwargs = {**_shape_kwargs(checkpoint_path, use_ema), **kwargs}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    if deploy is not None:
        kwargs["deploy"] = deploy
    model = build_model(name, **kwargs)
    if checkpoint_path is not None:
        model = load_checkpoint(model, checkpoint_path, use_ema=use_ema)
        model.class_names = meta.get("class_names")
    if features_only:
        model = FeatureListNet(model, out_indices)
    return model

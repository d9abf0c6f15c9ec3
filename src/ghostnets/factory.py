"""``create_model``: build a registered model, in training or deploy form, optionally from a checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from .checkpoint import load_weights, read_metadata, read_state_dict
from .deploy.reparameterize import reparameterize
from .edits import apply_edits
from .errors import CheckpointError
from .models import FeatureListNet
from .registry import build_model


def _shape_kwargs(state_dict: dict) -> dict:
    """``num_classes`` and ``in_chans`` as a state dict has them (for files without ghostnets metadata)."""
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
    if name is not None and not isinstance(name, str):
        raise TypeError(f"create_model takes a model name (str) first, got {type(name).__name__}; "
                        "see ghostnets.list_models()")
    if pretrained:
        raise ValueError("ghostnets downloads no weights (model hubs may be unreachable): download the official file "
                         "and pass checkpoint_path=... (every official layout loads as is)")
    meta, state_dict = {}, None
    if checkpoint_path is not None:
        meta = read_metadata(checkpoint_path)
        state_dict, _ = read_state_dict(checkpoint_path, use_ema=use_ema)
    if name is None:
        if not meta.get("model"):
            raise CheckpointError("create_model needs a model name unless checkpoint_path is a ghostnets .safetensors "
                                  "file that records it (written by save_checkpoint)")
        name = meta["model"]
    if meta.get("model") == name:
        kwargs = {**meta["kwargs"], **kwargs}
        if meta.get("features") is not None and not features_only:  # a saved feature model rebuilds as one
            features_only, out_indices = True, out_indices or meta["features"]
    elif state_dict is not None:
        kwargs = {**_shape_kwargs(state_dict), **kwargs}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    if deploy is not None:
        kwargs["deploy"] = deploy
    edits = meta.get("edits") if meta.get("model") == name else None
    deploy_after_loading = False
    if edits:  # a ghostified or pruned model: the base in training form, the edits replayed, then the file's form
        want_deploy = kwargs.pop("deploy", False)
        model = apply_edits(build_model(name, **kwargs), edits)
        if meta.get("deploy"):
            if not want_deploy:
                raise CheckpointError(f"{checkpoint_path} holds the deploy form (BatchNorms folded); it cannot be "
                                      "loaded as the training form: load it with deploy=True")
            model = reparameterize(model)
        deploy_after_loading = want_deploy and not meta.get("deploy")
    else:
        model = build_model(name, **kwargs)
    if features_only:
        model = FeatureListNet(model, out_indices)
    if state_dict is not None:
        model = load_weights(model, state_dict, source=checkpoint_path)
        model.class_names = meta.get("class_names")
    if deploy_after_loading:
        class_names = model.class_names
        model = reparameterize(model)
        model.class_names = class_names
    return model

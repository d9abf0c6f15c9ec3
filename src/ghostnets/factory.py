"""``create_model``: build a registered model, in training or deploy form, optionally from a checkpoint (a file of
your own, or the published one: ``pretrained=True``, :mod:`.hub`).

Following ``checkpoint_path`` walks down once: read the file's record (:mod:`.checkpoint`), build the base model
(:mod:`.registry`), replay its recorded edits (:mod:`.transforms`), load the weights, attach the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from . import transforms
from .checkpoint import load_weights, read_metadata, read_state_dict, record_from_metadata
from .data.transforms import FASHION_MNIST_INPUT
from .errors import CheckpointError
from .hub import download_weights, weights_for
from .models import FeatureListNet
from .record import attach_record, in_chans_of, record_of
from .registry import build_model, canonical_name, eval_transform_for, is_torchvision


def _shape_kwargs(state_dict: dict, name: str) -> dict:
    """``num_classes`` and ``in_chans`` as a state dict has them (for files without ghostnets metadata): read at the
    keys of ``name``'s classifier and first conv, found on a shape-only (meta device) build of the model."""
    with torch.device("meta"):
        probe = build_model(name)
    found = {}
    # the classifier is the last Linear of every registered and torchvision classification model
    head_key = next((f"{n}.weight" for n, m in reversed(list(probe.named_modules())) if isinstance(m, nn.Linear)),
                    None)
    if head_key in state_dict and state_dict[head_key].ndim == 2:
        found["num_classes"] = state_dict[head_key].shape[0]
    stem_key = next((k for k, v in probe.state_dict().items() if v.ndim == 4), None)
    if stem_key in state_dict and state_dict[stem_key].ndim == 4 and not is_torchvision(name):  # (3 channels only)
        found["in_chans"] = state_dict[stem_key].shape[1]
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
    re-initialises the classifier. ``pretrained=True`` does the same with the card's published file, downloaded
    once into ``$GHOSTNETS_CACHE`` (:func:`ghostnets.hub.download_weights`). ``features_only=True`` returns the maps
    of the last block at each stride (``out_indices`` picks among strides 2, 4, 8, 16, 32). Other keyword arguments
    (``width``, ``drop_rate``, ``drop_path_rate``, the RepGhost ablations) go to the family builder. The model's
    ``record`` (:class:`~ghostnets.record.ModelRecord`) says what it is, what it was trained on and how it takes
    images.
    """
    if name is not None and not isinstance(name, str):
        raise TypeError(f"create_model takes a model name (str) first, got {type(name).__name__}; "
                        "see ghostnets.list_models()")
    if pretrained:
        checkpoint_path, use_ema = _pretrained_file(name, checkpoint_path, use_ema)
    meta, state_dict = {}, None
    if checkpoint_path is not None:
        meta = read_metadata(checkpoint_path)
        state_dict, _ = read_state_dict(checkpoint_path, use_ema=use_ema)
    if name is None:
        if not meta.get("model"):
            raise CheckpointError("create_model needs a model name unless checkpoint_path is a ghostnets .safetensors "
                                  "file (written by save_checkpoint) or a run's checkpoint.pth that records it")
        name = meta["model"]
    name = canonical_name(name)
    own_file = meta.get("model") == name
    file_record = record_from_metadata(meta) if own_file else None
    shapes = _shape_kwargs(state_dict, name) if state_dict is not None else {}
    if file_record is not None:
        kwargs = {**shapes, **file_record.kwargs, **kwargs}
        if meta.get("features") is not None and not features_only:  # a saved feature model rebuilds as one
            features_only, out_indices = True, out_indices or meta["features"]
    else:
        kwargs = {**shapes, **kwargs}
    kwargs.pop("deploy", None)  # files of ghostnets 0.1 repeat the form among the arguments
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    file_deploy = bool(file_record and file_record.deploy)
    want_deploy = file_deploy if deploy is None else deploy
    if file_deploy and not want_deploy and file_record.edits:
        raise CheckpointError(f"{checkpoint_path} holds the deploy form (BatchNorms folded); it cannot be "
                              "loaded as the training form: load it with deploy=True")
    edits = [e.as_dict() for e in file_record.edits] if file_record else []
    if edits or (file_deploy and name.startswith("torchvision:")):
        # an edited (ghostified, pruned) or torchvision model: the base in training form, the edits replayed, then
        # the file's form; the other form after loading
        model = transforms.apply_edits(build_model(name, **kwargs), edits)
        if file_deploy:
            model = transforms.reparameterize(model)
        deploy_after_loading = want_deploy and not file_deploy
    else:
        model = build_model(name, **kwargs, **({"deploy": want_deploy} if want_deploy else {}))
        deploy_after_loading = False
    if features_only:
        model = FeatureListNet(model, out_indices)
    if state_dict is not None:
        model = load_weights(model, state_dict, source=checkpoint_path)
    if deploy_after_loading:
        model = transforms.reparameterize(model)
    return attach_record(model, _final_record(model, name, file_record))


def _pretrained_file(name: str | None, checkpoint_path, use_ema: bool | None) -> tuple[Path, bool | None]:
    """The published file of ``name`` (downloaded, or from the cache) and which of its state dicts to take."""
    if checkpoint_path is not None:
        raise ValueError(f"create_model got pretrained=True and checkpoint_path={str(checkpoint_path)!r}: pass one of "
                         "them (pretrained=True loads the published file, checkpoint_path=... a file of your own)")
    if name is None:
        raise ValueError("pretrained=True needs a model name; `ghostnets list --pretrained` shows those with weights")
    weights = weights_for(canonical_name(name))
    return download_weights(weights), weights.use_ema if use_ema is None else use_ema


def _final_record(model: nn.Module, name: str, file_record):
    """The built model's record with what the file adds: class names and the input it was trained with. Where
    none is recorded: the card's, or for a grayscale model the bundled dataset's (Fashion-MNIST, 32 px)."""
    record = record_of(model)
    spec = file_record.input if file_record is not None else None
    spec = spec or record.input
    if spec is None:
        in_chans = in_chans_of(model)
        spec = FASHION_MNIST_INPUT if in_chans == 1 else eval_transform_for(name).with_channels(in_chans)
    return record.updated(class_names=file_record.class_names if file_record else None, input=spec)


def ghostify(model: nn.Module | str, *args, **kwargs) -> nn.Module:
    """:func:`ghostnets.transforms.ghostify` that also takes a model name (built by :func:`create_model` first)."""
    return transforms.ghostify(create_model(model) if isinstance(model, str) else model, *args, **kwargs)

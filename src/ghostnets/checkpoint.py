"""Checkpoints: safe loading of every layout met in the wild, and atomic safetensors saving with metadata.

Layouts read (docs/reference.md §4-5): a bare state dict; ``{'state_dict': ...}``; full training checkpoints with
``state_dict_ema`` (preferred unless ``use_ema=False``); ``module.`` prefixes (DDP); ``.pth``, ``.pth.tar``,
``.safetensors``; training-form and deploy-form files. What is particular to one family's official files (GhostNetV2's
profiler buffers, RepGhost's deploy layout) is adapted by that family's own filter (``Family.state_dict_filter``,
``Family.lift_deploy_file``), which this module applies without naming a family. A run's ``checkpoint.pth`` (the
trainer's resumable state) records its model too. Nothing is unpickled but tensors and plain containers
(``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import argparse
import functools
import json
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .atomic import atomic_write
from .data.transforms import InputSpec
from .errors import CheckpointError, UnsafeCheckpointError
from .models import FeatureListNet
from .record import Edit, ModelRecord, is_deploy, model_name, record_of
from .registry import build_model, deploy_file_lifters, list_models, state_dict_filters
from .transforms import reparameterize

StateDict = dict[str, torch.Tensor]
FORMAT = "ghostnets"
TRAIN_STATE_FORMAT = "ghostnets-train-state/1"  # a run's checkpoint.pth (ghostnets.train.state writes it)
_WRAPPER_KEYS = ("state_dict", "model", "net")


def _safe_globals() -> list:
    """Classes that official training checkpoints pickle beside the weights and that run no code when rebuilt."""
    allowed: list = [argparse.Namespace]
    try:
        import numpy as np
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2 or no numpy: torch's own defaults apply
        return allowed
    # numpy 1.x pickled the scalar constructor as numpy.core.multiarray.scalar; allow both spellings
    allowed += [np.dtype, scalar, (scalar, "numpy.core.multiarray.scalar")]
    allowed += [type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "bool")]
    return allowed


def _read_file(path: Path) -> tuple[object, dict[str, str]]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (or is not a file)")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
        except Exception as e:
            raise CheckpointError(f"cannot read {path} as safetensors ({e}); the file is corrupt or not safetensors") \
                from None
    corrupt = f"cannot read {path}: the file is corrupt, truncated or not a PyTorch checkpoint"
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True), {}
    except pickle.UnpicklingError as e:
        try:
            needed = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:
            needed = []
        if not needed and "GLOBAL" not in str(e):
            raise CheckpointError(f"{corrupt} ({str(e).splitlines()[0]})") from None
        what = f": it would import and call {', '.join(needed)}" if needed else ""
        raise UnsafeCheckpointError(
            f"refused to load {path}: it is not a plain weights file{what}. Unpickling it could run arbitrary "
            "code, so ghostnets loads only tensors (torch.load(weights_only=True)). If you trust its source, re-save "
            "only its state dict (torch.save(obj['state_dict'], 'weights.pth')) or convert it to .safetensors. "
            f"(torch said: {str(e).splitlines()[0]})"
        ) from None
    except Exception as e:
        raise CheckpointError(f"{corrupt} ({type(e).__name__}: {e})") from None


def _unwrap(obj: object, use_ema: bool | None, path: Path) -> StateDict:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict or a training checkpoint")
    ema = obj.get("state_dict_ema", obj.get("model_ema"))  # timm's training files; ConvNeXt's and EdgeNeXt's
    if use_ema is not False and isinstance(ema, Mapping) and ema:
        obj = ema
    elif use_ema:
        raise CheckpointError(f"use_ema=True but {path} has no 'state_dict_ema' or 'model_ema' "
                              f"(keys: {sorted(obj)[:10]})")
    else:
        for key in _WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors (top-level keys: {sorted(obj)[:10]})")
    return tensors


def _clean(state_dict: StateDict) -> StateDict:
    out = {}
    for key, value in state_dict.items():
        while key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    for keep_weights in state_dict_filters():
        out = keep_weights(out)
    return out


def read_state_dict(path: str | Path, *, use_ema: bool | None = None) -> tuple[StateDict, dict[str, str]]:
    """The cleaned weights of a checkpoint file and its ghostnets metadata (empty for other files)."""
    path = Path(path)
    obj, metadata = _read_file(path)
    return _clean(_unwrap(obj, use_ema, path)), metadata


def read_metadata(path: str | Path) -> dict:
    """The ghostnets metadata of a checkpoint (model, kwargs, deploy, class_names, input, features, edits, and the
    caller's own entries under ``extra``), or ``{}``: a ``.safetensors`` file save_checkpoint wrote (its header
    only is read) or a run's ``checkpoint.pth``.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    if path.suffix == ".pth":
        return _run_metadata(path)
    if path.suffix != ".safetensors":
        return {}
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = dict(f.metadata() or {})
    except Exception as e:
        raise CheckpointError(f"cannot read {path} as safetensors ({e}); the file is corrupt or not safetensors") \
            from None
    if raw.get("format") != FORMAT:
        return {}
    extra = {k: v for k, v in raw.items() if k not in _RESERVED_METADATA}
    spec = raw.get("input", extra.pop("input", None))  # files of ghostnets 0.1 kept it among the caller's entries
    return {"model": raw.get("model"), "kwargs": json.loads(raw.get("kwargs", "{}")),
            "deploy": raw.get("deploy") == "true", "class_names": json.loads(raw.get("class_names", "null")),
            "input": InputSpec.from_dict(json.loads(spec)) if spec else None,
            "features": json.loads(raw.get("features", "null")), "edits": json.loads(raw.get("edits", "[]")),
            "extra": extra}


def _run_metadata(path: Path) -> dict:
    """What a run's ``checkpoint.pth`` records of its model, in :func:`read_metadata`'s shape; ``{}`` otherwise."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not ours, or unreadable: the weights loader gives the clear message
        return {}
    if not isinstance(state, dict) or state.get("format") != TRAIN_STATE_FORMAT:
        return {}
    return {"model": state["arch"], "kwargs": dict(state["config"].get("model_kwargs") or {}), "deploy": False,
            "class_names": list(state["class_names"]), "input": InputSpec.from_dict(state["input"]),
            "features": None, "edits": [], "extra": {}, "run_state": True}


def record_from_metadata(meta: dict) -> ModelRecord:
    """The :class:`ModelRecord` a file's metadata describes (the edits as recorded, without reports)."""
    kwargs = {k: v for k, v in meta.get("kwargs", {}).items() if k != "deploy"}
    edits = tuple(Edit(e["op"], e.get("args", {})) for e in meta.get("edits", []))
    class_names = list(meta["class_names"]) if meta.get("class_names") else None
    return ModelRecord(meta.get("model"), kwargs, edits, class_names, meta.get("input"), bool(meta.get("deploy")))


def _diff(model: nn.Module, state_dict: StateDict) -> tuple[list, list, list]:
    """(missing, unexpected, wrongly-shaped) keys of ``state_dict`` against ``model``."""
    target = model.state_dict()
    missing = [k for k in target if k not in state_dict]
    # a feature net is a truncated backbone: the head and later stages of a full file are simply not its own
    unexpected = [] if isinstance(model, FeatureListNet) else [k for k in state_dict if k not in target]
    wrong = [(k, tuple(state_dict[k].shape), tuple(target[k].shape))
             for k in target if k in state_dict and state_dict[k].shape != target[k].shape]
    return missing, unexpected, wrong


def _head_prefix(model: nn.Module) -> str | None:
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    for name, module in model.named_modules():
        if head is not None and module is head:
            return name + "."
    return "classifier." if hasattr(model, "num_classes") else None


def _only_head_differs(model: nn.Module, diff: tuple[list, list, list]) -> bool:
    prefix = _head_prefix(model)
    keys = diff[0] + diff[1] + [k for k, _, _ in diff[2]]
    return prefix is not None and all(k.startswith(prefix) for k in keys)


def _fits(model: nn.Module, state_dict: StateDict) -> bool:
    diff = _diff(model, state_dict)
    return not any(diff) or _only_head_differs(model, diff)


def _load(model: nn.Module, state_dict: StateDict, source: Path, strict: bool) -> nn.Module:
    target = model.state_dict()
    missing, unexpected, wrong = diff = _diff(model, state_dict)
    if any(diff) and _only_head_differs(model, diff):
        prefix = _head_prefix(model)
        found = state_dict.get(prefix + "weight")
        warnings.warn(
            f"{source.name}: the classifier does not fit (checkpoint {found.shape[0] if found is not None else 'no'} "
            f"classes, model {getattr(model, 'num_classes', '?')}); the backbone is loaded and the classifier "
            "re-initialised",
            stacklevel=3,
        )
        model.load_state_dict({k: v for k, v in state_dict.items() if not k.startswith(prefix)}, strict=False)
        return model
    if strict and any(diff):
        raise CheckpointError(_mismatch_message(model, source, missing, unexpected, wrong, state_dict))
    if any(diff):
        warnings.warn(f"{source.name}: loaded non-strictly; {len(missing)} missing, {len(unexpected)} unexpected and "
                      f"{len(wrong)} wrongly-shaped keys skipped", stacklevel=3)
    model.load_state_dict({k: v for k, v in state_dict.items() if k in target and v.shape == target[k].shape},
                          strict=False)
    return model


@functools.cache
def _backbone_shapes(name: str, deploy: bool) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes of a registered model without its classifier, built once per process on the meta
    device (shapes only: no memory, no initialisation)."""
    with torch.device("meta"):
        model = build_model(name, deploy=deploy, num_classes=0)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _guess_architecture(state_dict: StateDict) -> list[str]:
    """Registered names whose keys and shapes match the file's backbone: in training form, else in deploy form (the
    deploy forms, whose re-parameterization on the meta device costs most of the search, only when no training form
    matches)."""
    shapes = {k: tuple(v.shape) for k, v in state_dict.items() if not k.startswith(("classifier.", "fc."))}
    for deploy in (False, True):
        found = [name + (" (deploy form)" if deploy else "") for name in list_models()
                 if shapes == _backbone_shapes(name, deploy)]
        if found:
            return found
    return []


def _mismatch_message(model, path, missing, unexpected, wrong, state_dict) -> str:
    def show(items):
        return ", ".join(map(str, items[:6])) + (f", ... ({len(items) - 6} more)" if len(items) > 6 else "")

    name = model_name(model)
    form = "deploy" if is_deploy(model) else "training"
    lines = [f"checkpoint {path} does not fit {name} ({form} form):"]
    if missing:
        lines.append(f"  {len(missing)} missing keys: {show(missing)}")
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected keys: {show(unexpected)}")
    if wrong:
        lines.append(f"  {len(wrong)} wrongly-shaped keys (file vs model): "
                     + show([f"{k} {a} vs {b}" for k, a, b in wrong]))
    guesses = _guess_architecture(state_dict)
    lines.append(f"  The file looks like {', '.join(guesses)}: create that model instead." if guesses else
                 "  It is another architecture or width; check the model name and width.")
    return "\n".join(lines)


def _lift(model: nn.Module, state_dict: StateDict) -> StateDict | None:
    """An official deploy-form file in ``model``'s training layout, by the first family lifter that takes it."""
    for lift in deploy_file_lifters():
        lifted = lift(model, state_dict)
        if lifted is not None:
            return lifted
    return None


def _training_twin(model: nn.Module) -> nn.Module | None:
    record = record_of(model)
    if record.name is None or record.edits:
        return None
    full = build_model(record.name, **{**record.kwargs, "deploy": False})
    return FeatureListNet(full, model.out_indices) if isinstance(model, FeatureListNet) else full


def _convert_form(model: nn.Module, state_dict: StateDict, source: Path) -> nn.Module | None:
    """Load a file of the other form (training vs deploy, ours or the official RepGhost deploy layout), or None."""
    if not is_deploy(model):
        twin = reparameterize(model)
        if _fits(twin, state_dict):
            warnings.warn(f"{source.name} is a deploy-form checkpoint: returning the deploy form of the model",
                          stacklevel=3)
            return _load(twin, state_dict, source, strict=True)
        lifted = _lift(model, state_dict)
        if lifted is not None and _fits(model, lifted):
            warnings.warn(f"{source.name} is an official deploy-form file: returning the deploy form of the "
                          "model", stacklevel=3)
            return reparameterize(_load(model, lifted, source, strict=True))
        return None
    train = _training_twin(model)
    if train is None:
        return None
    for candidate in (state_dict, _lift(train, state_dict)):
        if candidate is not None and _fits(train, candidate):
            model.load_state_dict(reparameterize(_load(train, candidate, source, strict=True)).state_dict())
            return model
    return None


def load_weights(model: nn.Module, state_dict: StateDict, *, source: str | Path, strict: bool = True) -> nn.Module:
    """Load an already read and cleaned ``state_dict`` (see :func:`load_checkpoint`); ``source`` names it."""
    source = Path(source)
    if _fits(model, state_dict):
        return _load(model, state_dict, source, strict)
    converted = _convert_form(model, state_dict, source)
    return converted if converted is not None else _load(model, state_dict, source, strict)


def load_checkpoint(
    model: nn.Module, path: str | Path, *, use_ema: bool | None = None, strict: bool = True
) -> nn.Module:
    """Load ``path`` into ``model`` and return the model that holds the weights.

    That is ``model`` itself, except when a training-form model meets a deploy-form file: then the deploy form of
    the model is returned (a warning says so). A deploy-form model takes training-form files (they are folded).
    A different class count keeps the backbone and re-initialises the classifier, with a warning. A feature model
    (``features_only``) takes full-model files. ``strict=False`` loads what fits and warns about the rest.
    """
    state_dict, _ = read_state_dict(path, use_ema=use_ema)
    return load_weights(model, state_dict, source=path, strict=strict)


_RESERVED_METADATA = ("format", "deploy", "model", "kwargs", "class_names", "input", "features", "edits")


def save_checkpoint(
    model: nn.Module, path: str | Path, *, class_names: list[str] | None = None, input: InputSpec | None = None,
    overwrite: bool = True, metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model``'s weights to ``path`` (.safetensors) atomically, with its record: what rebuilds it from the
    file alone (name, arguments, edits, form) and how it takes images (class names, input preprocessing).

    ``class_names`` / ``input`` override the record's. ``metadata`` adds string entries of your own (any key but
    the reserved ones: {reserved}).
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save_checkpoint writes safetensors; name the file *.safetensors, got {path.name}")
    metadata = dict(metadata or {})
    bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
    clash = [k for k in metadata if k in _RESERVED_METADATA]
    if bad or clash:
        raise ValueError(f"metadata must map str to str without the reserved keys {_RESERVED_METADATA}; "
                         f"offending keys: {bad + clash}")
    record = record_of(model)
    meta = {**metadata, "format": FORMAT, "deploy": "true" if is_deploy(model) else "false"}
    if record.name is not None:
        meta["model"] = record.name
        meta["kwargs"] = json.dumps({k: v for k, v in record.kwargs.items() if k != "deploy"})
    if record.edits:  # ghostify / prune steps that rebuild it from the base model
        meta["edits"] = json.dumps([edit.as_dict() for edit in record.edits])
    if isinstance(model, FeatureListNet):
        meta["features"] = json.dumps(list(model.out_indices))
    class_names = class_names if class_names is not None else record.class_names
    if class_names is not None:
        meta["class_names"] = json.dumps(list(class_names))
    spec = input if input is not None else record.input
    if spec is not None:
        meta["input"] = json.dumps(spec.as_dict())
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    try:
        return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta), overwrite=overwrite)
    except OSError:  # exists already, disk full, no permission: the system's own words say it best
        raise
    except Exception as e:  # safetensors' own errors
        raise CheckpointError(f"cannot write {path}: {e}") from None


save_checkpoint.__doc__ = save_checkpoint.__doc__.format(reserved=", ".join(_RESERVED_METADATA))

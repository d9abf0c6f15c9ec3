"""The one record ghostnets keeps of a model: what rebuilds it and how it takes images.

``create_model`` attaches a :class:`ModelRecord` as ``model.record``; transforms (reparameterize, ghostify, prune)
return models whose record notes the step; ``save_checkpoint`` writes it into the file and
``create_model(checkpoint_path=...)`` reads it back. Nothing else about a model is stapled onto its modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from .data.transforms import InputSpec


@dataclass(frozen=True)
class Edit:
    """One architecture edit applied since the base model was built: ``op(**args)``, replayable from a checkpoint.

    ``report`` is what the edit said of itself (a ghostify or prune table); it is not written to files.
    """

    op: str
    args: dict
    report: Any = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict:
        return {"op": self.op, "args": self.args}


@dataclass(frozen=True)
class ModelRecord:
    """A model's name and constructor arguments (``None`` name: a module ghostnets did not build), the edits replayed
    on top, the class names it was trained on, its input preprocessing and whether it is the deploy form."""

    name: str | None = None
    kwargs: dict = field(default_factory=dict)
    edits: tuple[Edit, ...] = ()
    class_names: list[str] | None = None
    input: InputSpec | None = None
    deploy: bool = False

    @property
    def report(self) -> Any:
        """The report of the last edit (``ghostify``'s or ``prune_channels``' table), or ``None``."""
        return self.edits[-1].report if self.edits else None

    def with_edit(self, op: str, args: dict, report: Any = None) -> ModelRecord:
        return replace(self, edits=(*self.edits, Edit(op, args, report)))

    def updated(self, **changes: Any) -> ModelRecord:
        """A copy with ``changes``; ``kwargs`` entries are merged into the recorded constructor arguments."""
        if "kwargs" in changes:
            changes["kwargs"] = {**self.kwargs, **changes["kwargs"]}
        if changes.get("class_names") is not None:
            changes["class_names"] = list(changes["class_names"])
        return replace(self, **changes)


def record_of(model: nn.Module) -> ModelRecord:
    """``model``'s record; an empty one (no name) for modules ghostnets did not build."""
    record = model.__dict__.get("record")
    return record if isinstance(record, ModelRecord) else ModelRecord()


def attach_record(model: nn.Module, record: ModelRecord) -> nn.Module:
    """Set ``model.record`` (returns ``model``)."""
    model.record = record
    return model


def model_name(model: nn.Module) -> str:
    """The registered name of ``model``, else its class name (for messages and file names)."""
    return record_of(model).name or type(model).__name__


def in_chans_of(model: nn.Module) -> int:
    """Input channels of ``model``: its ``in_chans``, else its first convolution's, else 3."""
    if isinstance(getattr(model, "in_chans", None), int):
        return model.in_chans
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else 3


def is_deploy(model: nn.Module) -> bool:
    """True for a deploy form: a ghostnets model built or folded so, or any module ``reparameterize`` returned."""
    return bool(getattr(model, "deploy", False)) or record_of(model).deploy


def num_classes_of(model: nn.Module) -> int:
    """Classes ``model`` predicts: its ``num_classes``, else the recorded argument, else its last linear layer's."""
    if isinstance(getattr(model, "num_classes", None), int):
        return model.num_classes
    if "num_classes" in record_of(model).kwargs:
        return record_of(model).kwargs["num_classes"]
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return last[-1].out_features if last else 0

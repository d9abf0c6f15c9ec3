"""Architecture edits recorded with a model so that a checkpoint rebuilds it: the replayable edit registry.

A transform that changes a model's structure (``ghostify``, channel pruning, later residual removal) records itself
in the result's :class:`~ghostnets.record.ModelRecord` (:func:`record_edit`) and registers how to replay it
(:func:`register_edit`). A checkpoint stores the base model's name and arguments plus that list of edits;
``create_model`` builds the base, calls :func:`apply_edits`, then loads the weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import CheckpointError
from ..record import attach_record, record_of

Replay = Callable[[nn.Module, dict], nn.Module]
_REPLAYS: dict[str, Replay] = {}


def register_edit(op: str, replay: Replay) -> None:
    """Let ``apply_edits`` rebuild edit ``op``: ``replay(model, args)`` returns the edited model (no report)."""
    _REPLAYS[op] = replay


def record_edit(edited: nn.Module, source: nn.Module, op: str, args: dict, report: Any = None) -> nn.Module:
    """Give ``edited`` the record of ``source`` plus the step ``op(**args)`` (and what it reported)."""
    return attach_record(edited, record_of(source).with_edit(op, args, report))


def apply_edits(model: nn.Module, edits: list[dict]) -> nn.Module:
    """Replay recorded ``edits`` (``{"op": ..., "args": {...}}``, in order) on a freshly built base model."""
    for edit in edits:
        if edit.get("op") not in _REPLAYS:
            raise CheckpointError(f"the checkpoint records an architecture edit {edit.get('op')!r} this ghostnets "
                                  f"version does not know ({', '.join(_REPLAYS)}); upgrade ghostnets")
        model = _REPLAYS[edit["op"]](model, edit.get("args", {}))
    return model

"""Architecture edits (``ghostify``, channel pruning) recorded with a model so a checkpoint rebuilds it.

A checkpoint stores the base model's name and arguments plus the list of edits applied since; ``create_model``
builds the base, replays the edits in order, then loads the weights.
"""

from __future__ import annotations

from torch import nn

from .errors import CheckpointError


def record_edit(edited: nn.Module, source: nn.Module, op: str, args: dict) -> None:
    """Note on ``edited`` that it is ``source`` after ``op(**args)`` (only for models a name rebuilds)."""
    if hasattr(source, "model_name"):
        edited.architecture_edits = [*getattr(source, "architecture_edits", []), {"op": op, "args": args}]


def apply_edits(model: nn.Module, edits: list[dict]) -> nn.Module:
    """Replay recorded ``edits`` on a freshly built base model."""
    from .ghostify import ghostify

    def prune(model: nn.Module, args: dict) -> nn.Module:
        from .deploy.prune import apply_pruned_widths

        return apply_pruned_widths(model, **args)

    ops = {"ghostify": lambda m, a: ghostify(m, **a, report=False), "prune": prune}
    for edit in edits:
        if edit.get("op") not in ops:
            raise CheckpointError(f"the checkpoint records an architecture edit {edit.get('op')!r} this ghostnets "
                                  f"version does not know ({', '.join(ops)}); upgrade ghostnets")
        model = ops[edit["op"]](model, edit.get("args", {}))
    return model

"""The resumable state of a training run: one file, written atomically, readable with ``weights_only=True``.

The layout follows the official RepGhost/timm training checkpoints (``state_dict``, ``state_dict_ema``,
``optimizer``, ``epoch``, ``arch``), so ``ghostnets eval --checkpoint run/checkpoint.pth [--use-ema]`` reads it too.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write
from ..checkpoint import TRAIN_STATE_FORMAT as STATE_FORMAT
from ..errors import CheckpointError


def capture_rng() -> dict:
    """Every random generator a training step draws from (dropout, drop path, mixup, workers' seeds)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached": cached},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: Path, state: dict) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts only) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: torch.save({"format": STATE_FORMAT, **state}, tmp))


def load_state(path: Path) -> dict:
    """A training state written by :func:`save_state` (never unpickles code)."""
    if not path.is_file():
        raise CheckpointError(f"no training state at {path}: nothing to resume (start a new run without --resume)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot resume from {path}: {type(e).__name__}: {str(e).splitlines()[0]} "
                              "(the file is corrupt, truncated, or not a ghostnets training state)") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a ghostnets training state (format {STATE_FORMAT}); "
                              "to start from its weights instead, pass it as an initial checkpoint")
    return state

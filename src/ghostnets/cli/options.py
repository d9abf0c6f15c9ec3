"""Command-line options that several subcommands share."""

from __future__ import annotations

import argparse


def add_ema_flags(parser: argparse.ArgumentParser) -> None:
    """``--use-ema`` / ``--no-ema``: which weights of a training checkpoint to take (default: EMA when present)."""
    ema = parser.add_mutually_exclusive_group()
    ema.add_argument("--use-ema", dest="use_ema", action="store_const", const=True, default=None,
                     help="take the EMA weights (default: EMA when the file has them)")
    ema.add_argument("--no-ema", dest="use_ema", action="store_const", const=False,
                     help="take the raw model weights even when the file has EMA weights")


def dashed_overrides(extra: list[str]) -> list[str]:
    """``["--lr", "0.2", "--amp"]`` -> ``["lr=0.2", "amp=true"]``: timm-style flags as ``field=value`` pairs."""
    pairs, i = [], 0
    while i < len(extra):
        item = extra[i]
        if not item.startswith("--"):
            pairs.append(item)
        elif "=" in item:
            pairs.append(item[2:])
        elif i + 1 < len(extra) and not extra[i + 1].startswith("--") and "=" not in extra[i + 1]:
            pairs.append(f"{item[2:]}={extra[i + 1]}")
            i += 1
        else:
            pairs.append(f"{item[2:]}=true")
        i += 1
    return pairs


def load_model(model: str | None, checkpoint, use_ema: bool | None = None):
    """The model ``--model`` / ``--checkpoint`` name, with its record: class names and input transform come from a
    ghostnets file or a run's ``checkpoint.pth``; other files need ``--model`` and get the model card's."""
    from ..factory import create_model

    return create_model(model, checkpoint_path=checkpoint, use_ema=use_ema)

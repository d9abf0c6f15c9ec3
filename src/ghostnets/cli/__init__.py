"""The ``ghostnets`` command. Each subcommand lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from ..errors import GhostnetsError
from . import (
    bench,
    blocks,
    download,
    evaluate,
    export,
    ghostify,
    models,
    predict,
    profile,
    prune,
    remove_residuals,
    reparam,
    train,
    verify,
)

SUBCOMMANDS = (models, blocks, download, reparam, verify, export, train, evaluate, predict, profile, bench, ghostify,
               prune, remove_residuals)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ghostnets", description="The GhostNet family of efficient CNNs: models, deploy, measure, train."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def _attach_flag_values(argv: list[str], flags: set[str]) -> list[str]:
    """``["--lr", "0.2"]`` -> ``["--lr=0.2"]`` for the flags argparse does not know (recipe fields)."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in flags and i + 1 < len(argv) and not argv[i + 1].startswith("--") and "=" not in argv[i + 1]:
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line as a namespace; ``extra`` holds the ``--field value`` recipe overrides of ``train``."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "accepts_extra", False) and extra:  # timm-style `--lr 0.2`: argparse took 0.2 as a positional
        argv = _attach_flag_values(argv, {e for e in extra if e.startswith("--") and "=" not in e})
        args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code (0 success, 1 failed check, 2 bad input)."""
    args = parse_args(argv)
    warnings.simplefilter("default")
    warnings.formatwarning = lambda message, category, *a, **k: f"ghostnets: warning: {message}\n"
    try:
        return int(args.run(args) or 0)
    except (GhostnetsError, OSError, ValueError, TypeError) as e:
        print(f"ghostnets: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ghostnets: interrupted", file=sys.stderr)
        return 130

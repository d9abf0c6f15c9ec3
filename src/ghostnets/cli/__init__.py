"""The ``ghostnets`` command. Each subcommand lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from ..errors import GhostnetsError
from . import bench, download, evaluate, export, ghostify, models, predict, profile, prune, reparam, train, verify

SUBCOMMANDS = (models, download, reparam, verify, export, train, evaluate, predict, profile, bench, ghostify, prune)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ghostnets", description="The GhostNet family of efficient CNNs: models, deploy, measure, train."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code (0 success, 1 failed check, 2 bad input)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
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

"""``ghostnets download NAME... [--all]``: fetch published weights ahead of time into the cache."""

from __future__ import annotations

import argparse
import sys

from ..errors import GhostnetsError
from ..hub import CACHE_ENV, cache_dir, download_weights, pretrained_names


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="download published weights into the cache (for offline use later)",
                       description=f"Download published weight files into ${CACHE_ENV} (now {cache_dir()}); "
                                   "create_model(NAME, pretrained=True) then needs no network.")
    p.add_argument("names", nargs="*", metavar="NAME", help="models with published weights (`ghostnets list "
                                                            "--pretrained`)")
    p.add_argument("--all", action="store_true", help="every model with published weights")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(run=run_download)


def run_download(args: argparse.Namespace) -> int:
    if bool(args.names) == args.all:
        raise ValueError("name the models to download, or pass --all (not both); `ghostnets list --pretrained` "
                         "shows the names with weights")
    failed = 0
    for name in pretrained_names() if args.all else args.names:
        try:
            path = download_weights(name, progress=args.progress)
        except GhostnetsError as e:  # one failure does not stop the others
            print(f"ghostnets: error: {name}: {e}", file=sys.stderr)
            failed += 1
            continue
        print(f"{name}  {path}")
    return 2 if failed else 0

"""``ghostnets blocks``: the registered building blocks, the shared keywords each honours, and their papers."""

from __future__ import annotations

import argparse

from ..layers.block_registry import SHARED_KEYWORDS, block_info, list_blocks
from ..table import format_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("blocks", help="list the building blocks a design space can swap",
                       description="Every registered block, built as create_block(NAME, in_chs, out_chs, stride, "
                                   f"*, {', '.join(SHARED_KEYWORDS)}); a keyword a block cannot honour is refused.")
    p.set_defaults(run=run_blocks)


def run_blocks(args: argparse.Namespace) -> int:
    rows = []
    for name in list_blocks():
        spec = block_info(name)
        rows.append([name, ", ".join(k for k in SHARED_KEYWORDS if k in spec.honours), spec.paper,
                     spec.arxiv, spec.summary])
    print(format_table(["block", "honours", "paper", "arXiv", "what it is"], rows, text_columns=5))
    return 0

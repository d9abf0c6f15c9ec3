"""``ghostnets verify [PATTERN]``: build every model, count it, re-parameterize it and prove the deploy form exact."""

from __future__ import annotations

import argparse
import sys

from ..counting import count_madds, count_params
from ..registry import build_model, list_models, model_info
from ..table import format_table
from ..transforms import is_equivalent, max_output_difference, randomize_batchnorm, reparameterize


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check params, MAdds and deploy equivalence of every registered model")
    p.add_argument("pattern", nargs="?", default="*")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    rows, failures = [], []
    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}; `ghostnets list` shows all", file=sys.stderr)
        return 1
    for name in names:
        card = model_info(name)
        model = randomize_batchnorm(build_model(name)).eval()  # non-trivial BN statistics: a wrong fold shows
        deployed = reparameterize(model)
        size = card.eval_transform.input_size[1:]
        params, madds = count_params(model), count_madds(model, size)
        diff, scale = max_output_difference(model, deployed, size)
        ok_params = params == card.params
        ok_madds = madds == card.madds
        ok_deploy = is_equivalent(diff, scale)
        if not (ok_params and ok_madds and ok_deploy):
            failures.append(name)
        rows.append((
            name, f"{params:,}", f"{card.params:,}" + ("" if ok_params else " !"),
            f"{madds / 1e6:.1f}M", f"{card.madds / 1e6:.1f}M" + ("" if ok_madds else " !"),
            f"{card.top1:.1f}", f"{count_params(deployed):,}", f"{diff:.1e}" + ("" if ok_deploy else " !"),
        ))
        if sys.stderr.isatty():
            print(f"checked {name:<20}", end="\r", file=sys.stderr, flush=True)
    print(format_table(["model", "params", "official", "MAdds", "official", "top-1", "deploy params",
                        "max|Δ| deploy"], rows))
    print(f"\n{len(rows) - len(failures)}/{len(rows)} models: exact params and MAdds, deploy form equal "
          "(max |Δ logits| <= 1e-4 · max(1, |logits|), random BN statistics, 2 images at the card's input size)")
    if failures:
        print("FAILED: " + ", ".join(failures))
    return 1 if failures else 0

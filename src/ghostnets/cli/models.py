"""``ghostnets list [PATTERN] [--pretrained]`` and ``ghostnets info NAME``."""

from __future__ import annotations

import argparse

from ..counting import count_madds, count_params
from ..hub import CACHE_ENV, cache_dir, cached_path
from ..registry import build_model, list_models, model_info
from ..table import format_table
from ..transforms import reparameterize


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'repghost*'")
    p.add_argument("--pretrained", action="store_true",
                   help="only models with published weights, with the file and its published top-1")
    p.set_defaults(run=run_list)
    p = sub.add_parser("info", help="a model's card, with its parameters and MAdds counted now")
    p.add_argument("name")
    p.set_defaults(run=run_info)


def run_list(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if args.pretrained:
        names = [n for n in names if model_info(n).weights is not None]
    if not names:
        which = "model with published weights" if args.pretrained else "model"
        print(f"no {which} matches {args.pattern!r}; `ghostnets list{' --pretrained' if args.pretrained else ''}` "
              "shows all")
        return 1
    if args.pretrained:
        rows = [(n, model_info(n).family, model_info(n).weights.file_name, f"{model_info(n).weights.top1:.2f}",
                 "yes" if cached_path(model_info(n).weights).is_file() else "no") for n in names]
        print(format_table(["model", "family", "file", "top-1", "cached"], rows))
        print(f"cache: {cache_dir()} (${CACHE_ENV}); `ghostnets download NAME` fetches ahead of time")
        return 0
    rows = [(n, model_info(n).family, f"{model_info(n).paper_params_m:.1f}M", f"{model_info(n).paper_madds_m:g}M",
             f"{model_info(n).top1:.1f}") for n in names]
    print(format_table(["model", "family", "params", "MAdds", "top-1"], rows))
    return 0


def run_info(args: argparse.Namespace) -> int:
    card = model_info(args.name)
    model = build_model(card.name).eval()
    deployed = reparameterize(model)
    t = card.eval_transform
    top5 = f" / top-5 {card.top5:.1f}" if card.top5 else ""
    print(f"{card.name}  ({card.family}, width {card.width:g})")
    print(f"  paper      {card.paper}\n             {card.arxiv}\n  code       {card.code}")
    print(f"  {card.dataset:<10} top-1 {card.top1:.1f}{top5}  (paper: {card.paper_params_m:g}M params, "
          f"{card.paper_madds_m:g}M MAdds)")
    official_deploy = f", official deploy files {card.deploy_params:,}" if card.deploy_params else ""
    print(f"  params     {count_params(model):,} training form (card: {card.params:,}), "
          f"{count_params(deployed):,} deploy form (every BN folded){official_deploy}")
    h, w = t.input_size[1:]
    print(f"  MAdds      {count_madds(model, (h, w)) / 1e6:.1f}M at {h}x{w} (card: {card.madds / 1e6:.1f}M)")
    print(f"  eval       resize {t.resize} {t.interpolation}, centre crop {t.input_size[1]}x{t.input_size[2]} "
          f"(crop_pct {t.crop_pct}), {'BGR, ' if t.bgr else ''}mean {t.mean}, std {t.std}")
    print(f"  recipe     {card.recipe}")
    print("  features   " + ", ".join(f"stride {f['reduction']}: {f['num_chs']} ch ({f['module']})"
                                       for f in model.feature_info))
    if card.weights is not None:
        w = card.weights
        ema = {True: ", EMA weights", False: ", raw (non-EMA) weights"}.get(w.use_ema, "")
        print(f"  weights    {w.file_name}  top-1 {w.top1:.2f}{ema}  sha256 {w.sha256 or 'not yet recorded'}\n"
              f"             {w.url}\n             cache: {cached_path(w)}"
              f"{'' if cached_path(w).is_file() else ' (not downloaded)'}")
    else:
        print("  weights    none published (`ghostnets list --pretrained` shows the models with weights)")
    if card.notes:
        print(f"  notes      {card.notes}")
    return 0

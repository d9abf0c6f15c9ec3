"""``ghostnets reparam IN --model NAME --out OUT``: training checkpoint -> verified deploy checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..factory import create_model
from ..record import is_deploy
from ..transforms import reparameterize
from .conversion import check_paths, save_if_equivalent
from .options import add_ema_flags


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reparam", help="convert a training checkpoint to a verified deploy-form .safetensors")
    p.add_argument("checkpoint", type=Path,
                   help="training checkpoint (.pth, .pth.tar, .safetensors; any official layout)")
    p.add_argument("--model", help="registered model name (optional for ghostnets .safetensors files)")
    p.add_argument("--out", type=Path, required=True, help="deploy checkpoint to write (.safetensors)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    add_ema_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_paths(args.out, args.force, args.checkpoint)
    model = create_model(args.model, checkpoint_path=args.checkpoint, deploy=False, use_ema=args.use_ema).eval()
    if is_deploy(model):
        raise ValueError(f"{args.checkpoint} is already in deploy form; nothing to convert")
    if not save_if_equivalent(model, reparameterize(model), args.out, force=args.force, what="training vs deploy",
                              form="the deploy form"):
        return 1
    print(f"wrote {args.out}")
    return 0

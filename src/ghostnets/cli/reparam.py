"""``ghostnets reparam IN --model NAME --out OUT``: training checkpoint -> verified deploy checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..checkpoint import save_checkpoint
from ..factory import create_model
from ..record import is_deploy
from ..transforms import is_equivalent, max_output_difference, reparameterize
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
    if args.out.suffix != ".safetensors":
        raise ValueError(f"--out must name a .safetensors file, got {args.out}")
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"{args.checkpoint} does not exist (or is not a file)")
    if args.out.exists() and not args.force:  # fail before the work, not after it
        raise FileExistsError(f"{args.out} exists; pass --force to overwrite it")
    model = create_model(args.model, checkpoint_path=args.checkpoint, deploy=False, use_ema=args.use_ema).eval()
    if is_deploy(model):
        raise ValueError(f"{args.checkpoint} is already in deploy form; nothing to convert")
    deployed = reparameterize(model)
    diff, scale = max_output_difference(model, deployed)
    print(f"max |Δ logits| training vs deploy: {diff:.3g} (max |logits| {scale:.3g})")
    if not is_equivalent(diff, scale):
        print("ghostnets: error: the deploy form is not equivalent; nothing written")
        return 1
    save_checkpoint(deployed, args.out, overwrite=args.force)
    print(f"wrote {args.out}")
    return 0

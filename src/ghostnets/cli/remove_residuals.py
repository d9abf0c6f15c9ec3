"""``ghostnets remove-residuals IN --out OUT``: a ResNet checkpoint -> its verified plain (RMNet) form."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..checkpoint import save_checkpoint
from ..counting import madds_input_size
from ..factory import create_model
from ..transforms import is_equivalent, max_output_difference, remove_residuals
from .options import add_ema_flags


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("remove-residuals", help="RMNet (arXiv 2111.00687): a ResNet checkpoint -> an equivalent "
                                                "plain network with no residual addition, verified")
    p.add_argument("checkpoint", type=Path, help="ResNet-family checkpoint (.pth, .pth.tar, .safetensors)")
    p.add_argument("--model", help="registered model name (optional for ghostnets .safetensors files)")
    p.add_argument("--out", type=Path, required=True, help="plain-form checkpoint to write (.safetensors)")
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
    model = create_model(args.model, checkpoint_path=args.checkpoint, use_ema=args.use_ema).eval()
    plain = remove_residuals(model)
    diff, scale = max_output_difference(model, plain, madds_input_size(model, None))
    print(f"max |Δ logits| residual vs plain: {diff:.3g} (max |logits| {scale:.3g})")
    if not is_equivalent(diff, scale):
        print("ghostnets: error: the plain form is not equivalent; nothing written")
        return 1
    save_checkpoint(plain, args.out, overwrite=args.force)
    print(f"wrote {args.out}: no residual addition left; prune it with `ghostnets prune --checkpoint {args.out}`")
    return 0

"""``ghostnets remove-residuals IN --out OUT``: a ResNet checkpoint -> its verified plain (RMNet) form."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..counting import madds_input_size
from ..factory import create_model
from ..transforms import remove_residuals
from .conversion import check_paths, save_if_equivalent
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
    check_paths(args.out, args.force, args.checkpoint)
    model = create_model(args.model, checkpoint_path=args.checkpoint, use_ema=args.use_ema).eval()
    if not save_if_equivalent(model, remove_residuals(model), args.out, force=args.force,
                              what="residual vs plain", form="the plain form",
                              input_size=madds_input_size(model, None)):
        return 1
    print(f"wrote {args.out}: no residual addition left; prune it with `ghostnets prune --checkpoint {args.out}`")
    return 0

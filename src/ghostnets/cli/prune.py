"""``ghostnets prune``: channel pruning (He et al., ICCV 2017) of a checkpoint down to a MAdds budget."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from .options import add_ema_flags

UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_madds(text: str) -> int:
    """``63M``, ``0.063G``, ``6.3e7``, ``63000k`` -> multiply-adds as an integer."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgG]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a number of multiply-adds such as 63M, 0.063G or 6.3e7, "
                                         f"got {text!r}")
    value = round(float(match[1]) * UNITS[match[2].lower()])
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the MAdds target must be positive, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="channel pruning (He et al. 2017) of a checkpoint to a MAdds target")
    p.add_argument("--checkpoint", type=Path, required=True, help="weights to prune (training form; ghostnets "
                   ".safetensors files carry the model, other layouts need --model)")
    p.add_argument("--model", help="registered model name (for files without ghostnets metadata)")
    p.add_argument("--target-madds", type=parse_madds, required=True, metavar="M",
                   help="the most multiply-adds the pruned model may have, counted at the model card's input size "
                        "(63M, 0.063G, 6.3e7)")
    p.add_argument("--calib", type=Path, help="folder of real images to sample the layers' outputs on (default: "
                   "the bundled Fashion-MNIST training split)")
    p.add_argument("--images", type=int, default=256, metavar="N", help="calibration images (default 256)")
    p.add_argument("--samples-per-image", type=int, default=10, metavar="S",
                   help="output positions sampled per image and layer (default 10, the paper's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled positions (default 0)")
    p.add_argument("--out", type=Path, help="pruned checkpoint to write (.safetensors; default: "
                   "<checkpoint stem>_pruned.safetensors beside the checkpoint)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    add_ema_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import save_checkpoint
    from ..data.samples import calibration_images
    from ..transforms import prune_channels
    from .conversion import check_paths
    from .options import load_model

    out = args.out or args.checkpoint.with_name(f"{args.checkpoint.stem}_pruned.safetensors")
    if args.images < 1:
        raise ValueError(f"--images must be >= 1, got {args.images}")
    check_paths(out, args.force, args.checkpoint)
    model = load_model(args.model, args.checkpoint, args.use_ema)
    spec = model.record.input
    calib = calibration_images(spec, args.calib, args.images)
    print(f"sampling {len(calib)} calibration images ({args.calib or 'bundled Fashion-MNIST training split'})")
    pruned = prune_channels(model, args.target_madds, calib, seed=args.seed,
                            samples_per_image=args.samples_per_image)
    report = pruned.record.report
    print(report.table())
    print(f"\nMAdds {report.madds_before / 1e6:.2f}M -> {report.madds_after / 1e6:.2f}M "
          f"({report.madds_before / max(report.madds_after, 1):.2f}x fewer; target {args.target_madds / 1e6:.2f}M)")
    save_checkpoint(pruned, out, overwrite=args.force)
    print(f"wrote {out} (fine-tune it to recover accuracy: ghostnets train --model {model.record.name} "
          f"--initial-checkpoint {out})")
    return 0

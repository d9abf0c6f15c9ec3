"""``ghostnets ghostify``: replace a model's convolutions by Ghost modules, print what changed, optionally save it."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..checkpoint import save_checkpoint
from ..factory import create_model
from ..transforms.ghostify import FIRST_CONV, ghostify
from .conversion import check_paths


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ghostify", help="replace every conv of a model by a Ghost module (the paper's plug-and-play)")
    p.add_argument("--model", help="registered name (resnet56_cifar, ghostnet_100, ...) or torchvision:NAME "
                                   "(torchvision:resnet50); optional with a ghostnets --checkpoint")
    p.add_argument("--checkpoint", type=Path, help="start from these weights (layers kept as convs keep them)")
    p.add_argument("--num-classes", type=int, help="classifier size (default: the model's or the checkpoint's)")
    p.add_argument("--ratio", type=int, default=2, metavar="S", help="Ghost ratio s, an integer >= 2 (default 2)")
    p.add_argument("--dw-size", type=int, default=3, metavar="D", help="cheap depthwise kernel d (default 3)")
    p.add_argument("--skip", nargs="+", default=[FIRST_CONV], metavar="NAME",
                   help=f"convs to keep: names, shell patterns ('layer4.*') or '{FIRST_CONV}' (default: the stem)")
    p.add_argument("--no-bn", dest="keep_bn", action="store_false",
                   help="no BatchNorm inside the Ghost modules (the model's own BNs stay either way)")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="where MAdds are counted (default: the model card's input size, else 224 224)")
    p.add_argument("--out", type=Path, help="save the ghostified model (.safetensors; rebuilds with create_model)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.model is None and args.checkpoint is None:
        raise ValueError("give --model NAME (or torchvision:NAME) or --checkpoint FILE")
    if args.out is not None:
        check_paths(args.out, args.force)
    model = create_model(args.model, checkpoint_path=args.checkpoint, num_classes=args.num_classes)
    ghosted = ghostify(model, args.ratio, args.dw_size, skip=args.skip, keep_bn=args.keep_bn,
                       input_size=tuple(args.input_size) if args.input_size else None)
    report = ghosted.record.report
    print(report.table())
    print(f"\nparams {report.params_before:,} -> {report.params_after:,} "
          f"({report.params_before / max(report.params_after, 1):.2f}x smaller)"
          + (f"; MAdds {report.madds_before / 1e6:.1f}M -> {report.madds_after / 1e6:.1f}M "
             f"({report.madds_before / max(report.madds_after, 1):.2f}x fewer)" if report.madds_after else ""))
    if args.out is not None:
        save_checkpoint(ghosted, args.out, overwrite=args.force)
        print(f"wrote {args.out} (the new Ghost modules are untrained: train or fine-tune it, e.g. ghostnets train "
              f"--model {model.record.name} --initial-checkpoint {args.out})")
    return 0

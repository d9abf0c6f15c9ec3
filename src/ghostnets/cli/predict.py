"""``ghostnets predict``: the top-k classes of image files, with labels from the checkpoint's metadata."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import add_ema_flags, load_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify image files with a checkpoint (top-k labels and probabilities)")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--checkpoint", type=Path, required=True, help="weights; ghostnets files carry model and labels")
    p.add_argument("--model", help="registered model name (needed for files without ghostnets metadata)")
    p.add_argument("--top-k", type=int, default=5)
    add_ema_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from ..data.image_folder import CORRUPT_ERRORS
    from ..record import num_classes_of

    if args.top_k < 1:
        raise ValueError("--top-k must be >= 1")
    model = load_model(args.model, args.checkpoint, args.use_ema).eval()
    record = model.record
    transform = record.input.transform()
    num_classes = num_classes_of(model)
    labels = record.class_names or [str(i) for i in range(num_classes)]
    k, failed = min(args.top_k, num_classes), 0
    for path in args.images:
        try:
            with Image.open(path) as image:
                x = transform(image).unsqueeze(0)
        except (FileNotFoundError, IsADirectoryError) as e:
            print(f"{path}: skipped, {e.strerror.lower()}", file=sys.stderr)
            failed += 1
            continue
        except CORRUPT_ERRORS as e:
            print(f"{path}: skipped, not a readable image ({e})", file=sys.stderr)
            failed += 1
            continue
        with torch.inference_mode():
            probs = model(x).softmax(1)[0]
        top = probs.topk(k)
        shown = ", ".join(f"{labels[i]} {100 * p:.1f}%" for p, i in zip(top.values.tolist(), top.indices.tolist()))
        print(f"{path}: {shown}")
    if failed:
        print(f"ghostnets: warning: {failed} of {len(args.images)} images could not be read", file=sys.stderr)
    return 1 if failed == len(args.images) else 0

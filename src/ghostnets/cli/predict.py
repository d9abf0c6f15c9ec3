"""``ghostnets predict``: the top-k classes of image files, with labels from the checkpoint's metadata."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from torch import nn

from ..data.transforms import FASHION_MNIST_INPUT, InputSpec
from .options import add_ema_flags


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify image files with a checkpoint (top-k labels and probabilities)")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--checkpoint", type=Path, required=True, help="weights; ghostnets files carry model and labels")
    p.add_argument("--model", help="registered model name (needed for files without ghostnets metadata)")
    p.add_argument("--top-k", type=int, default=5)
    add_ema_flags(p)
    p.set_defaults(run=run)


def input_spec_for(model: nn.Module, checkpoint: Path) -> InputSpec:
    """How ``model`` wants its images: as its training run recorded, else the model card's eval transform."""
    from ..checkpoint import read_metadata
    from ..registry import model_info

    raw = read_metadata(checkpoint).get("extra", {}).get("input")
    if raw:
        return InputSpec.from_dict(json.loads(raw))
    if model.in_chans == 1:  # a grayscale model without a recorded input: the bundled dataset's
        return FASHION_MNIST_INPUT
    card = model_info(model.model_name).eval_transform
    return InputSpec.from_crop_pct(card.input_size[-1], card.crop_pct, card.interpolation, card.mean, card.std,
                                   channels=model.in_chans)


def run(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from ..data.image_folder import CORRUPT_ERRORS
    from ..factory import create_model

    if args.top_k < 1:
        raise ValueError("--top-k must be >= 1")
    model = create_model(args.model, checkpoint_path=args.checkpoint, use_ema=args.use_ema).eval()
    spec, transform = input_spec_for(model, args.checkpoint), None
    transform = spec.transform()
    labels = model.class_names or [str(i) for i in range(model.num_classes)]
    k, failed = min(args.top_k, model.num_classes), 0
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

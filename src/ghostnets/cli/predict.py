"""``ghostnets predict``: the top-k classes of image files, with labels from the checkpoint's metadata."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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


def load_for_inference(args: argparse.Namespace):
    """The model a checkpoint holds, its class names and the input transform it was trained with.

    ghostnets ``.safetensors`` files and a run's ``checkpoint.pth`` carry all three; other files need ``--model``
    and get the model card's eval transform.
    """
    from ..checkpoint import read_metadata
    from ..factory import create_model
    from ..registry import eval_transform_for
    from ..train.state import run_metadata

    file_meta = read_metadata(args.checkpoint) if args.checkpoint else {}  # create_model reads these itself
    meta = file_meta or (run_metadata(args.checkpoint) if args.checkpoint else {})
    name = args.model or meta.get("model")
    kwargs = meta.get("kwargs", {}) if not file_meta and meta.get("model") == name else {}
    model = create_model(name, checkpoint_path=args.checkpoint, use_ema=args.use_ema, **kwargs)
    class_names = getattr(model, "class_names", None) or meta.get("class_names")
    raw = meta.get("extra", {}).get("input")
    if raw:
        spec = InputSpec.from_dict(json.loads(raw))
    elif model.in_chans == 1:  # a grayscale model without a recorded input: the bundled dataset's
        spec = FASHION_MNIST_INPUT
    else:
        card = eval_transform_for(model.model_name)
        spec = InputSpec.from_crop_pct(card.input_size[-1], card.crop_pct, card.interpolation, card.mean, card.std,
                                       channels=model.in_chans)
    return model, class_names, spec


def run(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from ..data.image_folder import CORRUPT_ERRORS

    if args.top_k < 1:
        raise ValueError("--top-k must be >= 1")
    model, class_names, spec = load_for_inference(args)
    model.eval()
    transform = spec.transform()
    labels = class_names or [str(i) for i in range(model.num_classes)]
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

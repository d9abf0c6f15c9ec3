"""``ghostnets eval``: top-1 / top-5 / loss of a checkpoint on the bundled test split or ``DIR/val``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .options import add_ema_flags, load_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint: top-1, top-5 and loss on held-out images")
    p.add_argument("--model", help="registered model name (optional for ghostnets .safetensors files)")
    p.add_argument("--checkpoint", type=Path, required=True, help="weights (.safetensors, .pth, .pth.tar, any "
                   "official layout, or a run's checkpoint.pth)")
    p.add_argument("--data", help="ImageFolder root (reads DIR/val) or a .npz in the bundled format; default: the "
                   "bundled Fashion-MNIST test split")
    p.add_argument("--reparam", action="store_true", help="evaluate the re-parameterized (deploy) form")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast (CPU) / float16 (CUDA)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    add_ema_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from functools import partial

    from ..record import in_chans_of, is_deploy, num_classes_of
    from ..train.distributed import init_distributed
    from ..train.engine import autocast, evaluate
    from ..train.loaders import evaluation_data
    from ..transforms import reparameterize

    if args.batch_size < 1 or args.workers < 0:
        raise ValueError("--batch-size must be >= 1 and --workers >= 0")
    context = init_distributed(args.device)
    model = load_model(args.model, args.checkpoint, args.use_ema)
    class_names, spec = model.record.class_names, model.record.input
    if args.reparam:
        model = reparameterize(model)
    model.to(context.device)
    batches, classes = evaluation_data(args.data, spec, args.batch_size, args.workers, context)
    num_classes = num_classes_of(model)
    if num_classes != len(classes) or (class_names and list(class_names) != list(classes)):
        raise ValueError(f"{args.checkpoint} was trained on {num_classes} classes "
                         f"({', '.join((class_names or ['?'])[:4])}, ...) but the data has {len(classes)} "
                         f"({', '.join(classes[:4])}, ...); evaluate on data with the classes the model was trained on")
    if in_chans_of(model) != spec.channels:
        raise ValueError(f"the model takes {in_chans_of(model)}-channel images, the data gives {spec.channels}")
    started = time.perf_counter()
    amp = partial(autocast, context.device, args.amp, "float16" if context.device.type == "cuda" else "bfloat16")
    result = evaluate(model, batches, context, amp=amp)
    seconds = time.perf_counter() - started
    form = "deploy form" if is_deploy(model) else "training form"
    print(f"{model.record.name} ({form}) on {result['images']} images: top-1 {result['top1']:.2f}%  top-5 "
          f"{result['top5']:.2f}%  loss {result['loss']:.4f}  ({seconds:.1f} s, {result['images'] / seconds:.0f} "
          "images/s)" + (f"; {result['skipped']} corrupt images skipped" if result["skipped"] else ""))
    return 0

"""``ghostnets train``: a recipe, optional data and overrides -> a run directory (resumable, DDP under torchrun)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..train.config import TrainConfig, list_recipes, load_recipe, parse_overrides, update_config
from ..train.state import load_state
from .options import dashed_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model: a paper recipe on ImageFolder data, or the bundled Fashion-MNIST",
        description="Train with a recipe (bundled: " + ", ".join(list_recipes()) + ", or a YAML file). Any recipe "
        "field can be overridden as field=value or --field value (e.g. epochs=5 --lr 0.2 amp=true). Under "
        "torchrun --nproc_per_node=N it runs DistributedDataParallel; batch_size is the global batch.")
    p.add_argument("--model", help="registered model name (default: the recipe's)")
    p.add_argument("--recipe", help="bundled recipe name or YAML file (default: quick without --data, else the "
                   "model card's recipe)")
    p.add_argument("--data", help="ImageFolder root (DIR/train/<class>/*, DIR/val/<class>/*) or a .npz in the "
                   "bundled format; default: Fashion-MNIST, fetched and cached on first use")
    p.add_argument("--out", type=Path, help="run directory (default: runs/<model>-<recipe>)")
    p.add_argument("--qat", metavar="CHECKPOINT", help="quantization-aware training: fine-tune these float weights' "
                   "deploy form with NNCF's fake quantizers (recipe default: qat, the float model as teacher) and "
                   "write last_int8.onnx / best_int8.onnx for ONNX Runtime and OpenVINO")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint.pth")
    p.add_argument("--force", action="store_true", help="start over in an --out that holds an earlier run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs stay)")
    p.add_argument("overrides", nargs="*", metavar="FIELD=VALUE", help="recipe fields to override")
    p.set_defaults(run=run, accepts_extra=True)


def resolve_config(args: argparse.Namespace):
    """The recipe the arguments name, with ``--model``, ``--data`` and the overrides applied."""
    from ..registry import TORCHVISION_PREFIX, eval_transform_for, model_info

    if args.resume:  # the saved run's configuration; the command line may change what RESUME_MAY_CHANGE allows
        if getattr(args, "qat", None):
            raise ValueError("--resume continues the saved run (quantization-aware or not): drop --qat")
        if args.out is None or args.recipe is not None:
            raise ValueError("--resume continues the run in --out with its saved recipe: give --out, not --recipe")
        config = TrainConfig(**load_state(args.out / "checkpoint.pth")["config"])
    elif getattr(args, "qat", None):
        from ..train.qat import QAT_RECIPE, qat_settings

        if args.model is not None:
            raise ValueError("--qat trains the model its checkpoint records; drop --model")
        config = qat_settings(load_recipe(args.recipe or QAT_RECIPE), args.qat)
    else:
        recipe = args.recipe
        if recipe is None:
            name = args.model or "ghostnet_100"
            if args.data is None or str(args.data).endswith(".npz"):
                recipe = "quick"
            else:  # an image folder: the model's own recipe (torchvision models: GhostNetV2's, a modern default)
                recipe = "ghostnetv2" if name.startswith(TORCHVISION_PREFIX) else model_info(name).recipe
        config = load_recipe(recipe)
    overrides = parse_overrides(list(args.overrides) + dashed_overrides(getattr(args, "extra", [])))
    if args.model is not None:
        overrides["model"] = args.model
    if args.data is not None:
        overrides["data"] = args.data
    config = update_config(config, overrides, "the command line")
    eval_transform_for(config.model)  # an unknown model name fails here, with suggestions
    return config


def run(args: argparse.Namespace) -> int:
    from ..train import train

    config = resolve_config(args)
    out = args.out or Path("runs") / f"{config.model}-{config.recipe}"
    summary = train(config, out, resume=args.resume, force=args.force, progress_bar=not args.no_progress)
    if summary is None or int(os.environ.get("RANK", "0")) != 0:  # rank 0 reports
        return 0
    speed = summary["images_per_second"] or 0.0
    final = summary["final_top1"]
    if "int8" in summary:
        return _report_qat(summary, out)
    print(f"trained {summary['model']} ({summary['recipe']}) for {summary['epochs']} epochs in "
          f"{summary['train_seconds']:.0f} s ({speed:.0f} images/s on {summary['processes']} process(es)); "
          f"final top-1 {final:.2f}%, best {summary['best_top1']:.2f}% (epoch {summary['best_epoch']}); "
          f"weights: {out / 'best.safetensors'}, {out / 'last.safetensors'}")
    return 0


def _report_qat(summary: dict, out: Path) -> int:
    figures = summary["int8"]
    print(f"quantization-aware training of {summary['model']}: {summary['epochs']} epochs in "
          f"{summary['train_seconds']:.0f} s; int8 file {out / 'last_int8.onnx'} (best: {out / 'best_int8.onnx'}); "
          f"on {figures['images']} held-out images float32 top-1 {figures['float32_top1']:.2f}%"
          + (f"; before training, post-training ranges agreed on {start['agreement']:.2f}%"
             if (start := summary.get("before_qat")) else "") + ":")
    for runtime in ("onnxruntime", "openvino"):
        if runtime in figures:
            f = figures[runtime]
            print(f"  {runtime}: int8 top-1 {f['int8_top1']:.2f}%, agreement with float32 {f['agreement']:.2f}%, "
                  f"batch 1 {f['float32_ms']:.2f} ms float32 -> {f['int8_ms']:.2f} ms int8 "
                  f"({f['int8_over_float32']:.2f}x; {f['int8_over_best_float32']:.2f}x of the faster float32)")
    return 0

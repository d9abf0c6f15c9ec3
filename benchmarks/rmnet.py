"""RMNet's residual removal (Meng et al., arXiv 2111.00687) on the bundled Fashion-MNIST: does it pay on this CPU?

Three deploy forms of one ResNet-18 (torchvision's layout, 1-channel input; trained at 32 px on the bundled data):
the ResNet itself, its RM form (``remove_residuals``: no residual addition, wider middle layers), and the RM form
channel-pruned (He et al. 2017, the existing ``prune_channels``) to half the ResNet's MAdds. Equal total epochs: the
ResNet trains ``2E`` epochs; the other two train the ResNet for ``E`` epochs, convert (and prune), then fine-tune
their plain form for ``E`` epochs. Top-1 on the 10,000 held-out images; batch-1 latency of each deploy form per
runtime (eager, ONNX Runtime, OpenVINO), all timed interleaved, at 32 px and 224 px (the latency does not depend on
the weights). Writes the ``rmnet`` section of BENCHMARKS.md.

    python benchmarks/rmnet.py [--epochs 2] [--per-class 600] [--seeds 0] [--out runs/rmnet]
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ghostnets  # noqa: E402
from ghostnets.data.samples import calibration_images  # noqa: E402
from ghostnets.data.transforms import FASHION_MNIST_INPUT  # noqa: E402
from ghostnets.runtime import build_runtime, summarize, time_interleaved  # noqa: E402
from ghostnets.train import TrainConfig  # noqa: E402
from ghostnets.train.config import load_recipe, update_config  # noqa: E402

from common import command_line, environment, run_training, subset, write_section  # noqa: E402

MODEL, MODEL_KWARGS = "resnet18", {}  # torchvision's layout (7x7/2 stem, max pool): the ResNet-18 users deploy
ROWS = ("ResNet-18", "RM ResNet-18 (no residuals)", "RM ResNet-18 pruned to 1/2 MAdds")
RUNTIMES = ("eager", "onnxruntime", "openvino")
SIZES = (32, 224)  # px: the bundled data's (accuracy), and ImageNet's (where ResNet-18 is deployed)


def config(args: argparse.Namespace, data: Path, seed: int, epochs: int, initial: Path | None = None,
           lr: float | None = None) -> TrainConfig:
    """The CIFAR recipe (SGD momentum 0.9, lr 0.1 at batch 128, wd 1e-4), cut to ``epochs`` with a cosine decay."""
    values = {"model": MODEL, "model_kwargs": dict(MODEL_KWARGS), "data": str(data), "epochs": epochs,
              "sched": "cosine", "decay_milestones": None, "warmup_epochs": 0.2, "seed": seed, "eval_every": epochs,
              "threads": args.threads, "initial_checkpoint": str(initial) if initial else None}
    if lr is not None:  # the plain forms: a lower lr, gradients clipped (no BatchNorm rescales them)
        values.update(lr=lr, clip_grad=5.0)
    return update_config(load_recipe("cifar"), values, "rmnet.py")


def prune_to_half(plain: torch.nn.Module, resnet: torch.nn.Module, calib: int, seed: int) -> torch.nn.Module:
    """``plain`` channel-pruned to half of ``resnet``'s MAdds at 32 px, on ``calib`` bundled training images."""
    target = ghostnets.count_madds(resnet, 32) // 2
    pruned = ghostnets.prune_channels(plain, target, calibration_images(FASHION_MNIST_INPUT, None, calib),
                                      input_size=32, seed=seed)
    print(pruned.record.report.table())
    return pruned


def latency(models: dict[str, torch.nn.Module], size: int, threads: int, runs: int) -> dict[str, dict[str, float]]:
    """Median batch-1 ms per model and runtime at ``size`` px, everything timed in interleaved blocks."""
    batch = np.random.default_rng(0).standard_normal((1, 1, size, size)).astype(np.float32)
    fns = {(row, rt): build_runtime(rt, ghostnets.reparameterize(m.eval()), batch.shape, threads=threads)
           for row, m in models.items() for rt in RUNTIMES}
    times = time_interleaved({f"{row}|{rt}": (lambda fn=fn: fn(batch)) for (row, rt), fn in fns.items()}, runs,
                             warmup=10)
    out: dict[str, dict[str, float]] = {}
    for key, ts in times.items():
        row, rt = key.split("|")
        out.setdefault(row, {})[rt] = summarize(ts, 1)["median_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=2, help="E: the converted models' pre-training and fine-tune")
    parser.add_argument("--per-class", type=int, default=600, help="training images per class (6000 = all)")
    parser.add_argument("--finetune-lr", type=float, default=0.005,
                        help="fine-tune LR of the plain forms (no BatchNorm: the recipe's 0.1, and 0.02, diverge)")
    parser.add_argument("--calib", type=int, default=128, help="calibration images for channel selection")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=100, help="timed batch-1 runs per model, runtime and size")
    parser.add_argument("--out", type=Path, default=Path("runs/rmnet"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data = subset(args.out, args.per_class)
    top1: dict[str, list[float]] = {row: [] for row in ROWS}
    finals: dict[str, Path] = {}
    train_seconds = 0.0
    for seed in args.seeds:
        root = args.out / f"seed{seed}"
        base = run_training(config(args, data, seed, 2 * args.epochs), root / "resnet18")
        half = run_training(config(args, data, seed, args.epochs), root / "resnet18_half")
        train_seconds += base["train_seconds"] + half["train_seconds"]
        top1[ROWS[0]].append(base["final_top1"])
        finals[ROWS[0]] = root / "resnet18" / "last.safetensors"
        trained = ghostnets.create_model(checkpoint_path=root / "resnet18_half" / "last.safetensors").eval()
        plain = ghostnets.remove_residuals(trained)
        starts = {ROWS[1]: (root / "rm_init.safetensors", functools.partial(copy.copy, plain)),
                  ROWS[2]: (root / "rm_pruned_init.safetensors",
                            functools.partial(prune_to_half, plain, trained, args.calib, seed))}
        for row, (path, make) in starts.items():
            if not path.exists():  # made only where no earlier run left it
                ghostnets.save_checkpoint(make(), path)
            folder = root / path.stem.replace("_init", "")
            summary = run_training(config(args, data, seed, args.epochs, initial=path, lr=args.finetune_lr), folder)
            train_seconds += summary["train_seconds"]
            top1[row].append(summary["final_top1"])
            finals[row] = folder / "last.safetensors"

    models = {row: ghostnets.create_model(checkpoint_path=path).eval() for row, path in finals.items()}
    at = {size: latency(models, size, args.threads, args.runs) for size in SIZES}
    lines = [
        "## RMNet: removing residuals, and pruning what they become (ResNet-18, bundled Fashion-MNIST)", "",
        f"Machine: {environment(args.threads)}. Regenerate: `{command_line()}` ({train_seconds / 60:.0f} min of "
        "training on this shared machine; finished runs in `--out` are reused).", "",
        f"ResNet-18 in torchvision's layout (7x7/2 stem and max pool), 1-channel 32 px, {args.per_class} training "
        f"images per class; the CIFAR recipe (SGD 0.9, lr 0.1 at batch 128, wd 1e-4) with a cosine decay. Equal "
        f"total epochs: the ResNet trains {2 * args.epochs}; the RM rows train it {args.epochs}, convert with "
        f"`remove_residuals` (exact: same logits), [prune with `prune_channels` to half the ResNet's MAdds, "
        f"{args.calib} calibration images], then fine-tune the plain net {args.epochs} epochs at lr "
        f"{args.finetune_lr}, gradients clipped at norm 5 (no BatchNorm is left to rescale them; at lr 0.02 the plain "
        f"net diverged). Top-1 on the 10,000 held-out images, seeds {args.seeds}. "
        f"Latency: deploy forms, batch 1, {args.threads} threads, median of {args.runs} runs, every model and "
        "runtime timed interleaved; ratio = the ResNet's time / this row's (above 1: faster).", "",
        "| model | params | MAdds @32 | top-1 | " + " | ".join(
            f"{rt} ms @{s} (ratio)" for s in SIZES for rt in RUNTIMES) + " |",
        "|---|---:|---:|---:|" + "---:|" * (2 * len(RUNTIMES)),
    ]
    for row in ROWS:
        m = models[row]
        cells = [f"{at[s][row][rt]:.2f} ({at[s][ROWS[0]][rt] / at[s][row][rt]:.2f}x)" for s in SIZES
                 for rt in RUNTIMES]
        lines.append(f"| {row} | {ghostnets.count_params(m):,} | {ghostnets.count_madds(m, 32) / 1e6:.1f}M | "
                     f"{statistics.mean(top1[row]):.2f} | " + " | ".join(cells) + " |")
    body = "\n".join(lines)
    write_section("rmnet", body)
    (args.out / "results.md").write_text(body + "\n")
    print(body)


if __name__ == "__main__":
    main()

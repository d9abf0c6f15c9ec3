"""The GhostNet paper's plug-and-play comparison (arXiv 1911.11907, Table 3), on the bundled Fashion-MNIST.

``--model`` takes any registered model (ResNet-56 by default, the paper's); its Ghost version is the paper's where it
is registered (ResNet-56/50, VGG-16), else ``ghostify(model)`` at s=2.

ResNet-56, Ghost-ResNet-56 (s=2), and ResNet-56 channel-pruned (He et al., ICCV 2017) to the Ghost version's MAdds:
the same recipe and epochs for each (the pruned one: prune the trained ResNet-56, then fine-tune for the same epochs),
over several seeds; top-1 on the 10,000 held-out images, params, MAdds, and CPU latency of each deploy form at batch 1
(eager PyTorch and ONNX Runtime, interleaved in the same run). Writes the ``plug_and_play[_MODEL]`` section of
BENCHMARKS.md.

    python benchmarks/plug_and_play.py [--model resnet56_cifar] [--seeds 0 1] [--epochs 4] [--per-class 1500]
                                       [--out runs/plug_and_play]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
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

BASELINE = "resnet56_cifar"
REGISTERED_GHOSTS = {"resnet56_cifar": "ghost_resnet56_cifar_s2", "resnet50": "ghost_resnet50_s2",
                     "vgg16_cifar": "ghost_vgg16_cifar_s2"}  # the paper's own Ghost versions; others: ghostify(s=2)
LABELS = {"resnet56_cifar": "ResNet-56"}


def rows_for(model: str) -> tuple[tuple[str, str, str], tuple[str, str]]:
    """The table's rows for ``model``: itself, its Ghost version, it channel-pruned; and the 2x-epochs rows (the
    pruned model trains twice, the baseline then the fine-tune: these give the others the same total epochs)."""
    label = LABELS.get(model, model)
    rows = (label, f"Ghost-{label} (s=2)", f"CP-{label} (channel pruning)")
    return rows, (f"{rows[0]}, 2x epochs", f"{rows[1]}, 2x epochs")


def ghost_start(model: str, out: Path) -> tuple[str, Path | None]:
    """The Ghost arm's model name and initial checkpoint: the registered Ghost version, else ``ghostify(model)``
    (s=2, the stem kept; freshly initialised, as the paper trains it) saved for the trainer to rebuild."""
    if model in REGISTERED_GHOSTS:
        return REGISTERED_GHOSTS[model], None
    path = out / f"{model}_ghostified_init.safetensors"
    if not path.exists():
        ghosted = ghostnets.ghostify(ghostnets.create_model(model, in_chans=1, num_classes=10), report=False)
        ghostnets.save_checkpoint(ghosted, path)
    return model, path


def config(args: argparse.Namespace, model: str, data: Path, seed: int, initial: Path | None = None,
           epochs: int | None = None) -> TrainConfig:
    """The paper's CIFAR recipe (SGD 0.9, lr 0.1 at batch 128, wd 1e-4), shortened to ``epochs`` with a cosine decay."""
    epochs = epochs or args.epochs
    return update_config(load_recipe("cifar"), {
        "model": model, "data": str(data), "epochs": epochs, "sched": "cosine", "decay_milestones": None,
        "warmup_epochs": 0.2, "seed": seed, "eval_every": epochs, "threads": args.threads,
        "initial_checkpoint": str(initial) if initial else None}, "plug_and_play.py")


def latency(models: dict[str, torch.nn.Module], threads: int, runs: int) -> dict[str, dict[str, float]]:
    """Median ms at batch 1 per model and runtime, all runtimes and models timed in interleaved blocks."""
    batch = np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32)
    fns = {(name, rt): build_runtime(rt, ghostnets.reparameterize(m.eval()), batch.shape, threads=threads)
           for name, m in models.items() for rt in ("eager", "onnxruntime")}
    times = time_interleaved({f"{n}|{rt}": (lambda fn=fn: fn(batch)) for (n, rt), fn in fns.items()}, runs, warmup=10)
    out: dict[str, dict[str, float]] = {}
    for key, ts in times.items():
        name, rt = key.split("|")
        out.setdefault(name, {})[rt] = summarize(ts, 1)["median_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=BASELINE,
                        help="any registered model (its Ghost version: the paper's where registered, else ghostify)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=1500, help="training images per class (6000 = all)")
    parser.add_argument("--calib", type=int, default=256, help="calibration images for channel selection")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200, help="timed batch-1 runs per model and runtime")
    parser.add_argument("--out", type=Path, default=None, help="default: runs/plug_and_play[_MODEL]")
    parser.add_argument("--equal-budget", action="store_true",
                        help="also train the model and its Ghost version for 2x epochs, the pruned pipeline's total")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    suffix = "" if args.model == BASELINE else f"_{args.model}"  # the default keeps its folder and section names
    args.out = args.out or Path(f"runs/plug_and_play{suffix}")
    args.out.mkdir(parents=True, exist_ok=True)
    data = subset(args.out, args.per_class)
    ROWS, EQUAL_BUDGET_ROWS = rows_for(args.model)  # noqa: N806
    ghost, ghost_init = ghost_start(args.model, args.out)
    ghost_model = ghostnets.create_model(ghost, in_chans=1, num_classes=10, checkpoint_path=ghost_init)
    target = ghostnets.count_madds(ghost_model, 32)
    rows = ROWS + (EQUAL_BUDGET_ROWS if args.equal_budget else ())
    top1: dict[str, list[float]] = {row: [] for row in rows}
    finals: dict[str, Path] = {}
    train_seconds = 0.0
    for seed in args.seeds:
        base_dir, ghost_dir, pruned_dir = (args.out / f"seed{seed}" / d for d in ("resnet56" if not suffix else
                                                                                         args.model, "ghost", "pruned"))
        runs = [(ROWS[0], args.model, None, base_dir, args.epochs),
                (ROWS[1], ghost, ghost_init, ghost_dir, args.epochs)]
        if args.equal_budget:
            runs += [(EQUAL_BUDGET_ROWS[0], args.model, None, base_dir.with_name(base_dir.name + "_2x"),
                      2 * args.epochs),
                     (EQUAL_BUDGET_ROWS[1], ghost, ghost_init, ghost_dir.with_name("ghost_2x"), 2 * args.epochs)]
        for row, model, initial, out, epochs in runs:
            summary = run_training(config(args, model, data, seed, initial=initial, epochs=epochs), out)
            train_seconds += summary["train_seconds"]
            top1[row].append(summary["final_top1"])
            finals[row] = out / "last.safetensors"
        pruned_init = args.out / f"seed{seed}" / "pruned_init.safetensors"
        if not pruned_init.exists():
            from ghostnets.transforms import prune_channels

            trained = ghostnets.create_model(checkpoint_path=base_dir / "last.safetensors")
            calib = calibration_images(FASHION_MNIST_INPUT, None, args.calib)
            t0 = time.time()
            pruned = prune_channels(trained, target, calib, seed=seed)
            print(pruned.record.report.table())
            print(f"pruned in {time.time() - t0:.0f} s")
            ghostnets.save_checkpoint(pruned, pruned_init)
        summary = run_training(config(args, args.model, data, seed, initial=pruned_init), pruned_dir)
        train_seconds += summary["train_seconds"]
        top1[ROWS[2]].append(summary["final_top1"])
        finals[ROWS[2]] = pruned_dir / "last.safetensors"

    models = {row: ghostnets.create_model(checkpoint_path=path).eval() for row, path in finals.items()}
    times = latency(models, args.threads, args.runs)
    base_ms = times[ROWS[0]]
    lines = [
        f"## Plug-and-play: Ghost modules vs channel pruning ({ROWS[0]}, bundled Fashion-MNIST)", "",
        f"Machine: {environment(args.threads)}. Regenerate: `{command_line()}` ({train_seconds / 60:.0f} min of "
        "training on this shared machine; finished runs in `--out` are reused).", "",
        f"Each model trained with the paper's CIFAR recipe (SGD momentum 0.9, lr 0.1 at batch 128, weight decay "
        f"1e-4) cut to {args.epochs} epochs with a cosine decay, on {args.per_class} training images per class "
        f"({10 * args.per_class:,} of 60,000: the CPU budget), 32 px (28x28 in a 32x32 canvas, random placement "
        f"and flips); top-1 after the last epoch on the 10,000 held-out images, seeds {args.seeds}. {ROWS[2]}: "
        f"the trained {ROWS[0]} of the same seed channel-pruned (LASSO channel selection + least-squares "
        f"reconstruction, {args.calib} calibration images) to the Ghost version's MAdds, then fine-tuned with the "
        f"same recipe and epochs, so it trains twice as long in all; the `2x epochs` rows (with --equal-budget) give "
        f"the other two the same total. Latency: deploy form (BN folded), batch 1, {args.threads} threads, median of "
        f"{args.runs} runs, every model and runtime timed interleaved; ratio = {ROWS[0]}'s time / this model's.", "",
        "| model | params | MAdds | top-1 per seed | top-1 mean | eager ms | ORT ms | speed-up eager / ORT |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        m, t = models[row], times[row]
        lines.append(
            f"| {row} | {ghostnets.count_params(m):,} | {ghostnets.count_madds(m, 32) / 1e6:.1f}M | "
            f"{', '.join(f'{a:.2f}' for a in top1[row])} | {statistics.mean(top1[row]):.2f} | "
            f"{t['eager']:.2f} | {t['onnxruntime']:.2f} | "
            f"{base_ms['eager'] / t['eager']:.2f}x / {base_ms['onnxruntime'] / t['onnxruntime']:.2f}x |")
    body = "\n".join(lines)
    write_section(f"plug_and_play{suffix}", body)
    (args.out / "results.md").write_text(body + "\n")
    print(body)


if __name__ == "__main__":
    main()

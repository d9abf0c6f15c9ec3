"""Knowledge distillation as GhostNetV3 trains (Liu et al., arXiv 2404.11202), on the bundled Fashion-MNIST.

A larger teacher is trained first; then the same student, with the same recipe and epochs, is trained without and
with distillation from it (GhostNetV3's loss: 1.0 x CE with label smoothing + 1.0 x soft cross-entropy to the
teacher at T = 1, see ``ghostnets.train.distill``), over several seeds; top-1 on the 10,000 held-out images.
Writes the ``distillation`` section of BENCHMARKS.md. Finished runs in ``--out`` are reused, an interrupted run is
resumed, and ``results.json`` is rewritten after every run.

    python benchmarks/distillation.py [--student NAME] [--teacher ghostnet_130] [--seeds 0 1] [--epochs 3]
        [--teacher-epochs 6] [--per-class 1000] [--threads 2] [--out runs/distillation]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ghostnets  # noqa: E402
from ghostnets.train import TrainConfig, train  # noqa: E402
from ghostnets.train.config import load_recipe, update_config  # noqa: E402
from plug_and_play import subset  # noqa: E402  (the same class-balanced subset of the training split)

from common import command_line, environment, write_section  # noqa: E402


def default_student() -> str:
    """``ghostnetv3_050`` where it is registered, else GhostNet v1's ``ghostnet_050``."""
    return "ghostnetv3_050" if "ghostnetv3_050" in ghostnets.list_models() else "ghostnet_050"


def config(args: argparse.Namespace, model: str, data: Path, seed: int, epochs: int, teacher: Path | None = None,
           teacher_name: str | None = None) -> TrainConfig:
    """The ``quick`` recipe (the bundled data's own: Nesterov SGD, lr 0.4 at batch 256, cosine, label smoothing 0.1)
    for ``epochs``; with ``teacher``, GhostNetV3's distillation at its official weights (1.0, 1.0) and T = 1."""
    values = {"model": model, "data": str(data), "epochs": epochs, "seed": seed, "eval_every": epochs,
              "threads": args.threads}
    if teacher is not None:
        values.update(teacher=teacher_name, teacher_checkpoint=str(teacher), kd_loss_weight=1.0, kd_temperature=1.0,
                      ori_loss_weight=1.0)
    return update_config(load_recipe("quick"), values, "distillation.py")


def run(cfg: TrainConfig, out: Path) -> dict:
    """A finished run's summary, else the run trained (resumed where it stopped)."""
    if (out / "summary.json").exists():
        return json.loads((out / "summary.json").read_text())
    resume = (out / "checkpoint.pth").exists()
    return train(cfg, out, resume=resume, force=not resume, progress_bar=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default=None, help="default: ghostnetv3_050 if registered, else ghostnet_050")
    parser.add_argument("--teacher", default="ghostnet_130")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each student run")
    parser.add_argument("--teacher-epochs", type=int, default=6)
    parser.add_argument("--per-class", type=int, default=1000, help="training images per class (6000 = all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/distillation"))
    args = parser.parse_args()
    student = args.student or default_student()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data = subset(args.out, args.per_class)
    results_file = args.out / "results.json"
    results: dict = {"student": student, "teacher": args.teacher, "runs": {}}

    def record(key: str, summary: dict) -> None:
        results["runs"][key] = {k: summary[k] for k in ("final_top1", "train_seconds", "epochs", "model")}
        results_file.write_text(json.dumps(results, indent=2))

    teacher_dir = args.out / f"teacher_{args.teacher}"
    record("teacher", run(config(args, args.teacher, data, 0, args.teacher_epochs), teacher_dir))
    teacher_file = teacher_dir / "last.safetensors"
    rows = {"without distillation": [], f"distilled from {args.teacher}": []}
    for seed in args.seeds:
        plain = run(config(args, student, data, seed, args.epochs), args.out / f"seed{seed}" / f"{student}_plain")
        record(f"plain_seed{seed}", plain)
        kd = run(config(args, student, data, seed, args.epochs, teacher_file, args.teacher),
                 args.out / f"seed{seed}" / f"{student}_kd")
        record(f"kd_seed{seed}", kd)
        rows["without distillation"].append(plain)
        rows[f"distilled from {args.teacher}"].append(kd)

    teacher = results["runs"]["teacher"]
    seconds = sum(r["train_seconds"] for r in results["runs"].values())
    params = {name: ghostnets.count_params(ghostnets.create_model(name, num_classes=10, in_chans=1))
              for name in (student, args.teacher)}
    plain_mean, kd_mean = (statistics.mean(s["final_top1"] for s in summaries) for summaries in rows.values())
    note = "" if student.startswith("ghostnetv3") else (
        " The student is GhostNet v1's ghostnet_050: ghostnetv3_050 was not registered when this ran.")
    lines = [
        "## Knowledge distillation (GhostNetV3's loss, bundled Fashion-MNIST)", "",
        f"Machine: {environment(args.threads)}. Regenerate: `{command_line()}` ({seconds / 60:.0f} min of training "
        "on this shared machine; finished runs in `--out` are reused).", "",
        f"Teacher {args.teacher} ({params[args.teacher]:,} params) trained {args.teacher_epochs} epochs (seed 0): "
        f"**{teacher['final_top1']:.2f} %** top-1. Student {student} ({params[student]:,} params), {args.epochs} "
        "epochs per run, without and with distillation from that teacher: loss = 1.0 x cross-entropy (label "
        "smoothing 0.1) + 1.0 x mean(-sum softmax(z_t) log_softmax(z_s)), T = 1, the official ghostnetv3_pytorch "
        "weights, untuned. Every run: the `quick` recipe (Nesterov SGD, lr 0.4 at batch 256, cosine after 0.3 warmup "
        f"epochs, label smoothing 0.1) on {args.per_class} training images per class ({10 * args.per_class:,} of "
        "60,000: the CPU budget), 32 px (28x28 in a 32x32 canvas, random placement and flips); top-1 after the last "
        f"epoch on the 10,000 held-out images, seeds {args.seeds}.{note}", "",
        "| student | top-1 per seed | top-1 mean | vs without | train s per seed |",
        "|---|---|---:|---:|---|",
    ]
    for label, summaries in rows.items():
        mean = statistics.mean(s["final_top1"] for s in summaries)
        top1 = ", ".join(f"{s['final_top1']:.2f}" for s in summaries)
        times = ", ".join(f"{s['train_seconds']:.0f}" for s in summaries)
        lines.append(f"| {student}, {label} | {top1} | {mean:.2f} | {mean - plain_mean:+.2f} | {times} |")
    lines += ["", f"Distillation changed the student's mean top-1 by {kd_mean - plain_mean:+.2f} points "
              f"(teacher {teacher['final_top1']:.2f} %)."]
    body = "\n".join(lines)
    write_section("distillation", body)
    (args.out / "results.md").write_text(body + "\n")
    print(body)


if __name__ == "__main__":
    main()

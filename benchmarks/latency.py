"""Batch-1 CPU latency of every ghostnets model (training and deploy form) beside timm's port, in one run.

Protocol (docs/reference.md §9): eval mode, torch.inference_mode, fixed thread count, warm-up, then median and p90
over the runs; the three variants of a model are timed round-robin so machine drift hits them alike.
Targets: ghostnets eager / timm eager <= 1.0 for every model; deploy form / training form <= 0.8.
Writes the `latency` section of BENCHMARKS.md.

    python benchmarks/latency.py [--models 'ghostnet*'] [--runs 50] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys

import timm
import torch

import ghostnets

from common import command_line, environment, median, p90, paired_ratio, time_interleaved, write_section


def measure(name: str, runs: int, warmup: int, size: int) -> dict[str, list[float]]:
    train = ghostnets.create_model(name).eval()
    deploy = ghostnets.reparameterize(train)
    reference = timm.create_model(name).eval()
    reference.load_state_dict(train.state_dict())  # same weights: same work for the allocator and the kernels
    reference_nhwc = timm.create_model(name).eval().to(memory_format=torch.channels_last)
    reference_nhwc.load_state_dict(train.state_dict())
    x = torch.randn(1, 3, size, size)
    x_nhwc = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return time_interleaved(
            {"timm": lambda: reference(x), "timm_nhwc": lambda: reference_nhwc(x_nhwc), "train": lambda: train(x),
             "deploy": lambda: deploy(x)}, runs, warmup,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="*", help="pattern over ghostnets.list_models()")
    parser.add_argument("--runs", type=int, default=50, help="rounds per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="fresh model instances per model")
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows, met = [], 0
    names = ghostnets.list_models(args.models)
    for name in names:
        # fresh model instances per repeat: where the allocator places a model's tensors shifts its speed by up to
        # 15 % on this VM, so the rounds of several instances are pooled
        t: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for key, values in measure(name, args.runs, args.warmup, args.size).items():
                t.setdefault(key, []).extend(values)
        r_timm = paired_ratio(t["train"], t["timm"])
        r_deploy = paired_ratio(t["deploy"], t["train"])
        ok = r_timm <= 1.0 and r_deploy <= 0.8
        met += ok
        r_nhwc = paired_ratio(t["train"], t["timm_nhwc"])
        rows.append(
            f"| {name} | {median(t['timm']):.2f} / {p90(t['timm']):.2f} | {median(t['timm_nhwc']):.2f} | "
            f"{median(t['train']):.2f} / {p90(t['train']):.2f} | {median(t['deploy']):.2f} / {p90(t['deploy']):.2f} "
            f"| **{r_timm:.2f}** | {r_nhwc:.2f} | **{r_deploy:.2f}** | {'yes' if ok else 'no'} |"
        )
        print(rows[-1], flush=True, file=sys.stderr)

    body = "\n".join([
        "## Eager CPU latency: ghostnets vs timm, training vs deploy form",
        "",
        f"Batch 1, {args.size}x{args.size}, eager PyTorch, `torch.inference_mode`, {args.threads} threads, "
        f"{args.repeats} fresh instances of each variant, each with {args.warmup} warm-up runs, then {args.runs} "
        "rounds timing each variant once, round-robin. Times in ms, median / p90 over all rounds; ratios are the "
        "median of the per-round ratios (robust to the drift of a shared machine).",
        f"Machine: {environment(args.threads)}.",
        f"Regenerate: `{command_line()}` (or `make bench`).",
        "Targets: ghostnets / timm <= 1.0 (same architecture and weights, training form) and deploy / training <= 0.8.",
        "",
        "| model | timm | timm, channels_last | ghostnets training form | ghostnets deploy form | ghostnets / timm "
        "| ghostnets / timm channels_last | deploy / training | targets met |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"{met}/{len(names)} models meet both targets.",
    ])
    if not args.no_write:
        write_section("latency", body)
    print(body)


if __name__ == "__main__":
    main()

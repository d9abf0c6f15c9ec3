"""The newest family members against what they are judged by, batch-1 CPU latency in one run each.

1. G-GhostNet (IJCV 2022) against the RegNetX network it is built from and against GhostNet (C-GhostNet): the paper
   built G-Ghost for GPUs, where GhostNet's depthwise convs and concats are slow; on a CPU the question is whether the
   cheap stage still pays. Ratios: each model / its RegNetX base (GhostNet / regnet_x_3_2gf).
2. GhostNetV3's deploy form against GhostNetV2 and RepGhostNet at equal width (ratios / GhostNetV2), and GhostNetV3's
   training form (what its branches cost before ``reparameterize``).

Every model is timed in its deploy form (BN folded, branches summed) in PyTorch eager, ONNX Runtime and OpenVINO; the
callables of one group are timed round-robin in the same rounds, so machine drift hits them alike; median ms and the
median of the per-round ratios. Writes the ``family`` section of BENCHMARKS.md.

    python benchmarks/family.py [--runs 40] [--threads 2] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

import ghostnets
from ghostnets.runtime import RuntimeContext, build_runtime, deploy_form

from common import command_line, environment, median, paired_ratio, time_interleaved, write_section

RUNTIMES = ("eager", "onnxruntime", "openvino")
G_GHOST = (("regnet_x_3_2gf", "g_ghost_regnetx_032", "ghostnet_130"), ("regnet_x_8gf", "g_ghost_regnetx_080"),
           ("regnet_x_16gf", "g_ghost_regnetx_160"))
V3 = (("ghostnetv2_100", "ghostnetv3_100", "repghostnet_100"), ("ghostnetv2_130", "ghostnetv3_130", "repghostnet_130"))


def callables(name: str, x: torch.Tensor, workdir: Path, threads: int) -> dict:
    deployed = deploy_form(ghostnets.create_model(name).eval())
    context = RuntimeContext(workdir)
    runners = {rt: build_runtime(rt, deployed, tuple(x.shape), threads=threads, context=context) for rt in RUNTIMES}
    array = x.numpy()
    return {f"{name} {rt}": (lambda f=f: f(array)) for rt, f in runners.items()}


def group_rows(group: tuple[str, ...], reference: str, runs: int, warmup: int, threads: int, workdir: Path,
               train_form: str | None = None) -> list[str]:
    """One table row per model of ``group``: ms per runtime, the best, and per-round ratios against ``reference``."""
    x = torch.randn(1, 3, 224, 224)
    fns = {}
    for name in group:
        fns.update(callables(name, x, workdir, threads))
    if train_form:
        model = ghostnets.create_model(train_form).eval()
        fns[f"{train_form} training form"] = lambda: model(x)
    with torch.inference_mode():
        times = time_interleaved(fns, runs, warmup)
    rows = []
    for name in group:
        ms = {rt: median(times[f"{name} {rt}"]) for rt in RUNTIMES}
        best = min(ms, key=ms.get)
        ratios = {rt: paired_ratio(times[f"{name} {rt}"], times[f"{reference} {rt}"]) for rt in ("eager", best)}
        card = ghostnets.model_info(name)
        deployed_madds = ghostnets.count_madds(deploy_form(ghostnets.create_model(name).eval())) / 1e6
        rows.append(f"| {name} | {card.top1:.1f} | {deployed_madds:,.0f} | {ms['eager']:.1f} | "
                    f"{ms['onnxruntime']:.1f} | {ms['openvino']:.1f} | {best} | **{ratios['eager']:.2f}** | "
                    f"**{ratios[best]:.2f}** |")
        print(rows[-1], file=sys.stderr, flush=True)
    if train_form:
        key = f"{train_form} training form"
        rows.append(f"| {train_form}, training form (eager) | | {ghostnets.model_info(train_form).madds / 1e6:,.0f} | "
                    f"{median(times[key]):.1f} | | | | **{paired_ratio(times[key], times[f'{reference} eager']):.2f}**"
                    " | |")
    return rows


HEADER = ("| model | top-1 (paper) | MAdds (M, deploy) | eager ms | onnxruntime ms | OpenVINO ms | best runtime | "
          "eager / reference | best / reference's same runtime |\n|---|---|---|---|---|---|---|---|---|")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="ghostnets-family-"))

    g_rows = []
    for group in G_GHOST:
        g_rows += group_rows(group, group[0], args.runs, args.warmup, args.threads, workdir)
    v3_rows = []
    for group in V3:
        v3_rows += group_rows(group, group[0], args.runs, args.warmup, args.threads, workdir, train_form=group[1])
    body = "\n".join([
        "## The family's newest members: G-GhostNet vs RegNetX, GhostNetV3 vs GhostNetV2 / RepGhostNet",
        "",
        f"Batch 1, 224x224, {args.threads} threads, float32, deploy forms (every BN folded, branches summed) in "
        f"PyTorch eager, ONNX Runtime and OpenVINO (as `ghostnets bench` builds them). Each group's callables are "
        f"timed round-robin in the same rounds ({args.warmup} warm-up, {args.runs} rounds); median ms; ratios are "
        "the median of per-round ratios against the group's first model in the same runtime. Random weights (no "
        "ImageNet files can be fetched here); top-1 is the paper's / torchvision's.",
        f"Machine: {environment(args.threads)}.",
        f"Regenerate: `{command_line()}`.",
        "",
        "G-GhostNet against its RegNetX base (and GhostNet 1.3x beside the 3.2G pair):",
        "",
        HEADER,
        *g_rows,
        "",
        "GhostNetV3 (deploy form = GhostNetV2's architecture) against GhostNetV2 and RepGhostNet at equal width, and "
        "GhostNetV3's training form (its branches unfused) for scale:",
        "",
        HEADER,
        *v3_rows,
        "",
        "GPU throughput (batch 256, AMP, channels_last; the setting G-GhostNet was built for): not measured: this "
        "session was lent no GPU.",
    ])
    print(body)
    if not args.no_write:
        write_section("family", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Computations the runtimes do not find themselves: measured, kept or dropped.

1. GhostNetV2's DFC pooling folded into its first conv (``fuse_for_inference``): ghostnetv2_100 at 224 px, deploy
   form vs fused, each exported and run by ONNX Runtime and OpenVINO, batch 1, interleaved.
2. The Ghost module's concat removed: the intrinsic maps' ReLU + depthwise cheap conv + concat, then a depthwise
   consumer (GhostNet's stride-2 ``conv_dw``), against one grouped conv writing intrinsic and ghost maps interleaved
   (an identity tap and the cheap kernel per group) and the consumer's channels permuted to read that order, at the
   shapes of ghostnet_100's ghost1 modules; outputs checked equal first.

    python benchmarks/runtime_fusions.py [--runs 60] [--threads 2] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import ghostnets
from ghostnets.runtime import build_runtime, deploy_form, onnx_runner, openvino_runner, time_interleaved
from ghostnets.runtime.runtimes import RuntimeContext
from ghostnets.transforms import randomize_batchnorm
from ghostnets.transforms.runtime_fusions import fuse_for_inference

from common import command_line, environment, write_section


class GhostThenConsumer(nn.Module):
    """primary 1x1 + ReLU -> cheap depthwise 3x3 + ReLU -> concat -> a depthwise 3x3 consumer."""

    def __init__(self, cin: int, init: int) -> None:
        super().__init__()
        self.primary, self.cheap = nn.Conv2d(cin, init, 1), nn.Conv2d(init, init, 3, padding=1, groups=init)
        self.consumer = nn.Conv2d(2 * init, 2 * init, 3, padding=1, groups=2 * init)

    def forward(self, x):
        p = torch.relu(self.primary(x))
        return self.consumer(torch.cat([p, torch.relu(self.cheap(p))], 1))


class Interleaved(nn.Module):
    """The same function with one grouped conv writing [p0, c0, p1, c1, ...] and the consumer permuted."""

    def __init__(self, m: GhostThenConsumer) -> None:
        super().__init__()
        init = m.cheap.out_channels
        self.primary, self.grouped = m.primary, nn.Conv2d(init, 2 * init, 3, padding=1, groups=init)
        self.perm = torch.tensor([i for g in range(init) for i in (g, init + g)])
        self.consumer = nn.Conv2d(2 * init, 2 * init, 3, padding=1, groups=2 * init)
        with torch.no_grad():
            weight = torch.zeros(2 * init, 1, 3, 3)
            weight[0::2, 0, 1, 1] = 1  # identity: relu(p) again is p
            weight[1::2] = m.cheap.weight
            bias = torch.zeros(2 * init)
            bias[1::2] = m.cheap.bias
            self.grouped.weight.copy_(weight)
            self.grouped.bias.copy_(bias)
            self.consumer.weight.copy_(m.consumer.weight[self.perm])
            self.consumer.bias.copy_(m.consumer.bias[self.perm])

    def forward(self, x):
        return self.consumer(torch.relu(self.grouped(torch.relu(self.primary(x)))))


def _runners(models: dict[str, nn.Module], shape, threads: int, workdir: Path) -> dict:
    fns = {}
    for key, model in models.items():
        path = workdir / f"{key}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(shape),), str(path), dynamo=False, input_names=["input"],
                              output_names=["out"])
        fns[f"{key} onnxruntime"] = onnx_runner(path, threads)
        fns[f"{key} openvino"] = openvino_runner(path, shape=tuple(shape), threads=threads)
    return fns


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="ghostnets-fusions-"))
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)

    deployed = deploy_form(randomize_batchnorm(ghostnets.create_model("ghostnetv2_100").eval(), seed=1))
    fused = fuse_for_inference(deployed)
    fns = {f"{form} {rt}": build_runtime(rt, model, x.shape, threads=args.threads,
                                         context=RuntimeContext(workdir / form))
           for form, model in (("deploy", deployed), ("fused", fused)) for rt in ("onnxruntime", "openvino")}
    ms = {k: statistics.median(v) for k, v in time_interleaved({k: (lambda f=f: f(x)) for k, f in fns.items()},
                                                                args.runs, 5).items()}
    dfc = [f"| ghostnetv2_100, DFC pooling folded | {rt} | {ms[f'deploy {rt}']:.2f} | {ms[f'fused {rt}']:.2f} | "
           f"**{ms[f'fused {rt}'] / ms[f'deploy {rt}']:.2f}** |" for rt in ("onnxruntime", "openvino")]

    ghost = []
    torch.manual_seed(0)
    for cin, init, side in ((16, 24, 112), (24, 36, 56), (40, 60, 28), (80, 240, 14)):
        a = GhostThenConsumer(cin, init).eval()
        b = Interleaved(a).eval()
        for batch in (1, 32):
            shape = (batch, cin, side, side)
            probe = torch.randn(shape)
            with torch.no_grad():
                assert (a(probe) - b(probe)[:, torch.argsort(b.perm)]).abs().max() < 1e-4
            inputs = probe.numpy()
            fns = _runners({"concat": a, "interleaved": b}, shape, args.threads, workdir)
            ms = {k: statistics.median(v) for k, v in time_interleaved(
                {k: (lambda f=f, i=inputs: f(i)) for k, f in fns.items()}, max(5, args.runs // (4 * batch)), 3).items()}
            for rt in ("onnxruntime", "openvino"):
                ghost.append(f"| ghost1 {cin}->{2 * init} at {side} px, batch {batch} | {rt} | "
                             f"{ms[f'concat {rt}']:.3f} | {ms[f'interleaved {rt}']:.3f} | "
                             f"**{ms[f'interleaved {rt}'] / ms[f'concat {rt}']:.2f}** |")
            print(*ghost[-2:], sep="\n", file=sys.stderr, flush=True)
    body = "\n".join([
        "## Computations the runtimes do not find: measured, kept or dropped",
        "",
        f"Each pair timed interleaved in one run, {args.threads} threads, median ms; outputs equal (< 1e-4) first. "
        "ratio = rewritten / original (below 1: the rewrite pays).",
        f"Machine: {environment(args.threads)}.",
        f"Regenerate: `{command_line()}`.",
        "",
        "| rewrite | runtime | original ms | rewritten ms | ratio |",
        "|---|---|---|---|---|",
        *dfc,
        *ghost,
    ])
    print(body)
    if not args.no_write:
        write_section("runtime_fusions", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Computations the runtimes do not find themselves: each rewrite of ``fuse_for_inference`` timed against the deploy
form in ONNX Runtime and OpenVINO, kept or dropped on the figures.

ghostnet_100 and ghostnetv2_100 at 224 px, random weights, batch 1 (``--batch``), 2 threads; every variant exported
by ``ghostnets export`` (checked against PyTorch) and all variants of one model timed in interleaved blocks.

    python benchmarks/runtime_fusions.py [--runs 60] [--batch 1] [--threads 2] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import ghostnets
from ghostnets.runtime import build_runtime, deploy_form, time_interleaved
from ghostnets.runtime.runtimes import RuntimeContext
from ghostnets.transforms import randomize_batchnorm
from ghostnets.transforms.runtime_fusions import fuse_for_inference

from common import command_line, environment, write_section

VARIANTS = {  # label: fuse_for_inference options
    "ghost1 concat removed (interleaved)": {"dfc": False, "se": False},
    "ghost1 halves read in place (split)": {"ghost": "split", "dfc": False, "se": False},
    "SE as matmuls": {"ghost": False, "dfc": False},
    "DFC pooling folded": {"ghost": False, "se": False},
}
RUNTIMES = ("onnxruntime", "openvino")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="ghostnets-fusions-"))
    shape = (args.batch, 3, 224, 224)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    rows = []
    for name in ("ghostnet_100", "ghostnetv2_100"):
        deployed = deploy_form(randomize_batchnorm(ghostnets.create_model(name).eval(), seed=1))
        forms = {"deploy": deployed}
        for label, options in VARIANTS.items():
            if label.startswith("DFC") and not name.startswith("ghostnetv2"):
                continue
            forms[label] = fuse_for_inference(deployed, **options)
        fns = {(form, rt): build_runtime(rt, model, shape, threads=args.threads,
                                         context=RuntimeContext(workdir / f"{name}-{i}"))
               for i, (form, model) in enumerate(forms.items()) for rt in RUNTIMES}
        times = time_interleaved({k: (lambda f=f: f(x)) for k, f in fns.items()}, args.runs, 5)
        ms = {k: statistics.median(v) for k, v in times.items()}
        for form in list(forms)[1:]:
            cells = " | ".join(f"{ms[('deploy', rt)]:.2f} -> {ms[(form, rt)]:.2f} "
                               f"(**{ms[(form, rt)] / ms[('deploy', rt)]:.2f}**)" for rt in RUNTIMES)
            rows.append(f"| {name} | {form} | {cells} |")
            print(rows[-1], file=sys.stderr, flush=True)
    body = "\n".join([
        "## Computations the runtimes do not find: measured, kept or dropped",
        "",
        f"`fuse_for_inference` rewrites (docs/reference.md, runtime fusions), each exact against the deploy form, "
        f"timed against it in the same run: 224 px, batch {args.batch}, {args.threads} threads, median ms of "
        f"{args.runs} calls in interleaved blocks; ratio = rewritten / deploy form (below 1: the rewrite pays).",
        f"Machine: {environment(args.threads)}.",
        f"Regenerate: `{command_line()}`.",
        "",
        "| model | rewrite | ONNX Runtime ms (ratio) | OpenVINO ms (ratio) |",
        "|---|---|---|---|",
        *rows,
    ])
    print(body)
    if not args.no_write:
        write_section("runtime_fusions", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

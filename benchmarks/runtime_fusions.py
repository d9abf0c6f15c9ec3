"""Computations the runtimes do not find themselves: each rewrite of ``fuse_for_inference`` timed against the deploy
form in ONNX Runtime and OpenVINO, kept or dropped on the figures.

ghostnet_100, ghostnetv2_100 and shufflenetv2_x1_0 at 224 px, random weights, at each of ``--batches``, 2 threads;
every form exported by ``ghostnets export`` without its own rewrites (``rewrites=False``: the deploy form's graph
as traced; checked against PyTorch) and all forms of one model timed in interleaved blocks.

    python benchmarks/runtime_fusions.py [--runs 60] [--batches 1,32] [--threads 2] [--no-write]
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
from ghostnets.runtime import deploy_form, export_model, time_interleaved
from ghostnets.runtime.sessions import onnx_runner, openvino_runner
from ghostnets.transforms import randomize_batchnorm
from ghostnets.transforms.runtime_fusions import fuse_for_inference

from common import command_line, environment, write_section

NONE = {"ghost": False, "dfc": False, "se": False, "shuffle": False}
VARIANTS = {  # label: (the models it applies to, fuse_for_inference options)
    "ghost1 concat removed (interleaved)": (("ghostnet_100", "ghostnetv2_100"), {**NONE, "ghost": True}),
    "ghost1 halves read in place (split)": (("ghostnet_100", "ghostnetv2_100"), {**NONE, "ghost": "split"}),
    "SE as matmuls": (("ghostnet_100", "ghostnetv2_100"), {**NONE, "se": True}),
    "DFC pooling folded": (("ghostnetv2_100",), {**NONE, "dfc": True}),
    "channel shuffles removed (kept: ghostnets export applies it)":
        (("shufflenetv2_x1_0",), {**NONE, "shuffle": True}),
}
MODELS = ("ghostnet_100", "ghostnetv2_100", "shufflenetv2_x1_0")
RUNTIMES = ("onnxruntime", "openvino")


def runner(runtime: str, form: torch.nn.Module, path: Path, shape: tuple[int, ...], threads: int):
    """``form``'s graph as traced (no rewrite of ``ghostnets export``'s own), checked, in ``runtime``."""
    if not path.exists():
        export_model(form, path, format="onnx", input_size=shape[-2:], dynamic_batch=True, rewrites=False)
    if runtime == "onnxruntime":
        return onnx_runner(path, threads)
    return openvino_runner(path, shape=shape, threads=threads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="ghostnets-fusions-"))
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    for name in MODELS:
        deployed = deploy_form(randomize_batchnorm(ghostnets.create_model(name).eval(), seed=1))
        forms = {"deploy": deployed}
        for label, (models, options) in VARIANTS.items():
            if name in models:
                forms[label] = fuse_for_inference(deployed, **options)
        for batch in batches:
            shape = (batch, 3, 224, 224)
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            fns = {(form, rt): runner(rt, model, workdir / f"{name}-{i}.onnx", shape, args.threads)
                   for i, (form, model) in enumerate(forms.items()) for rt in RUNTIMES}
            runs = args.runs if batch == 1 else max(10, 2 * args.runs // batch)
            times = time_interleaved({k: (lambda f=f, x=x: f(x)) for k, f in fns.items()}, runs, 3,
                                     block=max(1, runs // 5))
            for form in list(forms)[1:]:
                cells = []
                for rt in RUNTIMES:
                    ratio = statistics.median(a / b for a, b in zip(times[(form, rt)], times[("deploy", rt)]))
                    cells.append(f"{statistics.median(times[('deploy', rt)]):.2f} -> "
                                 f"{statistics.median(times[(form, rt)]):.2f} (**{ratio:.2f}**)")
                rows.append(f"| {name} | {batch} | {form} | {' | '.join(cells)} |")
                print(rows[-1], file=sys.stderr, flush=True)
    body = "\n".join([
        "## Computations the runtimes do not find: measured, kept or dropped",
        "",
        f"`fuse_for_inference` rewrites (docs/reference.md, runtime fusions), each exact against the deploy form, "
        f"timed against it in the same run: 224 px, {args.threads} threads, median ms of {args.runs} calls at "
        f"batch 1 ({2 * args.runs} // batch, at least 10, above), in interleaved blocks of a fifth of them; ratio = "
        f"the median over calls of rewritten / deploy form (below 1: the rewrite pays).",
        f"Machine: {environment(args.threads)}.",
        f"Regenerate: `{command_line()}`.",
        "",
        "| model | batch | rewrite | ONNX Runtime ms (ratio) | OpenVINO ms (ratio) |",
        "|---|---|---|---|---|",
        *rows,
    ])
    print(body)
    if not args.no_write:
        write_section("runtime_fusions", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

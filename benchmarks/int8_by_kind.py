"""Where INT8 time goes: OpenVINO's per-node profile of the float32 and the all-int8 file, by kind of node.

The INT8 target (<= 0.6x of float32) is met at batch 32 and missed at batch 1 (BENCHMARKS.md, deploy_int8_vnni).
This says which nodes int8 speeds up and which it does not: for each model trained at 224 px
(benchmarks/trained_224.py) the float32 deploy form (ONNX) and its all-int8 OpenVINO file (histogram ranges, the
CPU's default weight bits, calibrated on the first 300-image set of int8_calibration.py) are compiled with
``PERF_COUNT`` and called in turns (interleaved blocks), at batch 1 and 32, 2 threads. Per kind: the mean
milliseconds per call summed over its nodes (OpenVINO's ``real_time``), int8 / float32, and the kernels int8 ran
(``exec_type``: ``brgconv``/``brgemm`` are oneDNN's brgemm kernels, ``jit`` its legacy ones, ``ref`` reference code).

    python benchmarks/int8_by_kind.py [--models ghostnet_100,mobilenetv3_large_100] [--runs 40]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from ghostnets.measure.roofline import _OpenVinoProfiled
from ghostnets.runtime.quantize import default_weight_bits
from ghostnets.runtime.timing import time_interleaved
from int8_calibration import SIZE, held_out, quantize
from int8_weight_range import cpu_has_vnni
from trained_224 import trained

from common import command_line, environment, int8_section, write_section

# OpenVINO CPU node type -> kind (the roofline section's kinds where they map; Subgraph is OpenVINO's fused
# element-wise chain: activations, residual adds, SE scales and the int8 file's requantization)
KINDS = {"Convolution": "convolution", "GroupConvolution": "depthwise", "Concat": "concat", "Subgraph": "element-wise",
         "Eltwise": "element-wise", "FakeQuantize": "element-wise", "HardSigmoid": "element-wise",
         "ReduceMean": "pooling", "Pooling": "pooling", "AvgPool": "pooling", "Interpolate": "resize",
         "FullyConnected": "linear", "FullyConnectedQuantizedLegacy": "linear", "Reorder": "reorder"}


def by_kind(nodes) -> tuple[dict[str, float], dict[str, Counter]]:
    """Milliseconds and kernel counts per kind, over the nodes that ran."""
    ms: dict[str, float] = defaultdict(float)
    kernels: dict[str, Counter] = defaultdict(Counter)
    for node in nodes:
        if node.executed:
            kind = KINDS.get(node.type, "other")
            ms[kind] += node.ms
            kernels[kind][node.kernel] += 1
    return ms, kernels


def measure(name: str, batches: list[int], threads: int, runs: int, bits: int) -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="int8-by-kind-") as tmp:
        work = Path(tmp)
        float_onnx, _, _, _, sets = held_out(name, work)
        int8 = quantize(("openvino", "asymmetric", "histogram"), float_onnx, sets[0], work, bits)
        for batch in batches:
            x = np.random.default_rng(0).random((batch, 3, SIZE, SIZE), dtype=np.float32)
            profiled = {key: _OpenVinoProfiled(path, x, threads) for key, path in (("float32", float_onnx),
                                                                                 ("int8", int8))}
            n = max(10, runs // batch)
            time_interleaved(profiled, n, warmup=3, block=max(1, n // 5))
            (f_ms, _), (q_ms, q_kernels) = (by_kind(p.nodes(skip=3)) for p in profiled.values())
            total_f, total_q = sum(f_ms.values()), sum(q_ms.values())
            for kind in sorted(set(f_ms) | set(q_ms), key=lambda k: -q_ms.get(k, 0.0)):
                f, q = f_ms.get(kind, 0.0), q_ms.get(kind, 0.0)
                ratio = f"{q / f:.2f}" if f else "-"
                kernels = ", ".join(f"{k} x{c}" for k, c in q_kernels[kind].most_common())
                rows.append(f"| {name} | {batch} | {kind} | {f:.2f} | {q:.2f} | {ratio} | {100 * q / total_q:.0f} % | "
                            f"{kernels} |")
                print(rows[-1], file=sys.stderr, flush=True)
            rows.append(f"| {name} | {batch} | **all nodes** | {total_f:.2f} | {total_q:.2f} | "
                        f"**{total_q / total_f:.2f}** | 100 % | |")
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ghostnet_100,mobilenetv3_large_100")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=60,
                        help="profiled calls at batch 1 (batch b: runs / b, at least 10)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    bits = default_weight_bits()
    rows = ["| model | batch | kind | float32 ms | int8 ms | int8 / float32 | share of int8 | int8 kernels (nodes) |",
            "|---|---|---|---|---|---|---|---|"]
    for name in trained(args.models):
        rows += measure(name, [int(b) for b in args.batches.split(",")], args.threads, args.runs, bits)
    body = "\n".join([
        "## Where INT8 time goes: OpenVINO's per-node profile, float32 vs all-int8, by kind",
        "",
        f"Machine: {environment(args.threads)}. VNNI: {cpu_has_vnni()}. {bits}-bit weights.",
        f"Regenerate: `{command_line()}`",
        "",
        "Each model's float32 deploy form and its all-int8 OpenVINO file (histogram ranges, no layer in float), "
        f"compiled with PERF_COUNT and called in turns, {args.threads} threads, random inputs; milliseconds per call "
        "summed over each kind's nodes (OpenVINO's real_time; `all nodes` is their sum, not the end-to-end time). "
        "element-wise: OpenVINO's fused Subgraph chains (activations, residual adds, SE scales, and in the int8 file "
        "the requantization). Kernels: `brgconv`/`brgemm` oneDNN's brgemm kernels, `jit` its legacy ones, `ref` "
        "reference code.",
        "",
        *rows,
    ])
    print(body)
    if not args.no_write:
        write_section(int8_section("int8_by_kind"), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

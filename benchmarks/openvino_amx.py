"""OpenVINO on a CPU with AMX: batch-1 latency of ghostnet_100 in float32 and all-int8 with AMX allowed and under the
cap below AMX that ``ghostnets.runtime`` sets (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_FP16``; docs/reference.md, 'OpenVINO
on AMX CPUs').

oneDNN reads the cap once per process, so each setting runs in a child process of its own, and the settings
alternate over ``--rounds`` rounds; each child times both files in interleaved blocks. The int8 file: NNCF
post-training quantization, 8-bit weights, calibrated on 300 training images, of the model benchmarks/trained_224.py
trains (run it first). Writes the ``openvino_amx`` section of BENCHMARKS.md.

    python benchmarks/openvino_amx.py [--rounds 2] [--threads 2] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import ghostnets
from ghostnets.data import FashionMNIST
from ghostnets.runtime.export import write_onnx_file
from ghostnets.runtime.sessions import openvino_runner
from int8_weight_range import CALIBRATION_IMAGES, openvino_int8
from trained_224 import checkpoint, data_file

from common import command_line, environment, write_section

SETTINGS = {"cap below AMX (ghostnets)": None, "AMX allowed": "ALL"}


def make_files(work: Path) -> tuple[Path, Path]:
    model = ghostnets.create_model(None, checkpoint_path=checkpoint("ghostnet_100")).eval()
    transform = model.record.input.transform()
    train = FashionMNIST("train", file=data_file())
    picks = np.linspace(0, len(train) - 1, CALIBRATION_IMAGES).astype(int)
    calib = torch.stack([transform(train[int(i)][0]) for i in picks])
    float_onnx = work / "float32.onnx"
    write_onnx_file(ghostnets.reparameterize(model).eval(), calib[:1], float_onnx, True, {})
    return float_onnx, openvino_int8(float_onnx, calib, "disable", work / "int8.xml")  # disable: 8-bit weights


def child(paths: list[str], threads: int, blocks: int = 15, calls: int = 10) -> dict:
    runs = {p: openvino_runner(p, threads=threads) for p in paths}
    x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    for run in runs.values():
        for _ in range(calls):
            run(x)
    times = {p: [] for p in paths}
    for _ in range(blocks):
        for p, run in runs.items():
            start = time.perf_counter()
            for _ in range(calls):
                run(x)
            times[p].append((time.perf_counter() - start) / calls * 1e3)
    return {Path(p).stem: statistics.median(v) for p, v in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.threads)))
        return 0
    if not checkpoint("ghostnet_100").exists():
        print(f"no trained 224-px ghostnet_100 ({checkpoint('ghostnet_100')}); run benchmarks/trained_224.py first",
              file=sys.stderr)
        return 2
    rows = ["| setting | round | float32 ms | int8 ms | int8 / float32 |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="openvino-amx-") as work:
        paths = [str(p) for p in make_files(Path(work))]
        for round_ in range(1, args.rounds + 1):
            for label, isa in SETTINGS.items():
                env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")}
                if isa:
                    env["ONEDNN_MAX_CPU_ISA"] = isa
                out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--child", *paths],
                                     env=env, capture_output=True, text=True, check=True).stdout
                ms = json.loads(out.strip().splitlines()[-1])
                rows.append(f"| {label} | {round_} | {ms['float32']:.2f} | {ms['int8']:.2f} | "
                            f"{ms['int8'] / ms['float32']:.2f} |")
                print(rows[-1], flush=True)
    body = ("## OpenVINO with and without AMX (ghostnet_100, 224 px, batch 1)\n\n"
            f"Machine: {environment(args.threads)}.\n\nRegenerate: `{command_line()}`\n\n"
            "Each row is one child process: median of 15 interleaved blocks of 10 calls of each file.\n\n"
            + "\n".join(rows))
    print(body)
    if not args.no_write:
        write_section("openvino_amx", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

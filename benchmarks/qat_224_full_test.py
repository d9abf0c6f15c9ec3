"""The QAT runs of benchmarks/qat_224.py measured again on the whole Fashion-MNIST test split (10,000 images).

qat_224.py measures agreement on the 2,000 held-out images of runs/int8-224's subset: at 99 % agreement one image is
0.05 points and the 95 % interval is about +-0.45 points, too wide to tell 98.9 % from 99.1 %. The whole test split
narrows it to about +-0.2. None of its images took part in training or calibration (both use the subset's training
images, which come from the training split). Each run's int8 file (``last_int8.onnx``) is compared with its float
model (the float deploy form in PyTorch, as the run does) in ONNX Runtime and OpenVINO. A measured run's figures are
kept beside it (``full_test.json``) and reused while its int8 file is unchanged. Writes the ``qat_224_full_test``
section of BENCHMARKS.md (``qat_224_full_test_vnni`` on a CPU with int8 dot products).

    python benchmarks/qat_224_full_test.py [--models ghostnet_100,repghostnet_100+8,...] [--threads 2] [--no-write]

The same ``--models`` entries as qat_224.py (``NAME``, ``NAME@N``, ``NAME+K``); a run not finished there is trained.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import ghostnets
from ghostnets.runtime import deploy_form
from ghostnets.train.distributed import Distributed
from ghostnets.train.loaders import evaluation_data
from ghostnets.train.qat import agreement_figures
from qat_224 import default_overflow_fix, parse_entry, qat_run, run_folder
from trained_224 import MODELS, checkpoint, trained

from common import command_line, environment, int8_section, write_section

RECORD = "full_test.json"


def wilson_interval(share: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval (in %) of a share (in %) measured on ``n`` images (Wilson, JASA 1927)."""
    p = share / 100
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * (centre - half), 100 * (centre + half)


def full_test_figures(name: str, folder, threads: int) -> dict:
    """Agreement and top-1 of ``folder``'s int8 file on the whole test split; reused while the file is unchanged."""
    int8_file = folder / "last_int8.onnx"
    stamp = {"size": int8_file.stat().st_size, "mtime_ns": int8_file.stat().st_mtime_ns}
    record = folder / RECORD
    if record.is_file():
        saved = json.loads(record.read_text())
        if saved.get("file") == stamp:
            return saved["figures"]
    model = ghostnets.create_model(None, checkpoint_path=checkpoint(name))
    batches, _ = evaluation_data(None, model.record.input, 64, 0, Distributed())
    figures = agreement_figures(int8_file, deploy_form(model), batches, threads=threads)
    tmp = record.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"file": stamp, "figures": figures}, indent=1))
    os.replace(tmp, record)
    return figures


def table(rows: dict[str, tuple[dict, dict]]) -> str:
    lines = ["| model | epochs | kept in float | images | float32 top-1 | runtime | int8 top-1 | agreement with "
             "float32 | 95 % interval | agreement on the 2,000 (qat_224) |", "|---" * 10 + "|"]
    for summary, figures in rows.values():
        kept = len(summary.get("kept_in_float") or [])
        for runtime in ("onnxruntime", "openvino"):
            if runtime not in figures:
                continue
            r, n = figures[runtime], figures["images"]
            low, high = wilson_interval(r["agreement"], n)
            subset = summary["int8"].get(runtime, {}).get("agreement", float("nan"))
            lines.append(f"| {summary['model']} | {summary['epochs']} | {kept or 'none'} | {n:,} | "
                         f"{figures['float32_top1']:.2f} % | {runtime} | {r['int8_top1']:.2f} % | "
                         f"**{r['agreement']:.2f} %** | {low:.2f}-{high:.2f} % | {subset:.2f} % |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    fix = default_overflow_fix()
    rows = {}
    for entry in args.models.split(","):
        name, epochs, float_layers = parse_entry(entry)
        if not trained(name):
            continue
        summary = qat_run(name, args.threads, fix, epochs, float_layers)
        rows[entry] = summary, full_test_figures(name, run_folder(name, fix, epochs, float_layers), args.threads)
        print(entry, json.dumps(rows[entry][1]), flush=True)
    body = ("## Quantization-aware training at 224 px, agreement on the whole test split\n\n"
            f"Machine: {environment(args.threads)}.\n\nRegenerate: `{command_line()}`\n\n"
            f"Weights: qat_overflow_fix={fix} ({'7-bit dense' if fix == 'enable' else '8-bit'} weights), the runs of "
            "the qat_224 section. Held-out: all 10,000 test images of Fashion-MNIST at 224 px (the 2,000 of the "
            "qat_224 section among them; none used in training or calibration). Interval: Wilson's, 95 %.\n\n"
            + table(rows))
    print(body)
    if not args.no_write:
        write_section(int8_section("qat_224_full_test"), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

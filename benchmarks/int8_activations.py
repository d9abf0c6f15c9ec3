"""All-int8 post-training quantization at 224 px with symmetric and asymmetric activations: agreement and speed.

Each model of benchmarks/trained_224.py (run it first) is quantized all-int8, without accuracy control, the way
``ghostnets.runtime.quantize`` does it (this CPU's default weight bits), calibrated on 300 evenly spaced training
images: by NNCF for OpenVINO with preset PERFORMANCE (symmetric activations) and MIXED (asymmetric), and by
onnxruntime's ``quantize_static`` with int8 symmetric and uint8 asymmetric activations. Reported: top-1 agreement
with float32 and both top-1s on all 2,000 held-out test images, and latency at each ``--batches`` size: every file
and the float32 file in both runtimes, timed in interleaved rounds, with the median per-round ratio to the faster
float32 runtime. Writes the ``int8_activations`` section of BENCHMARKS.md (``int8_activations_vnni`` on a CPU with
int8 dot products).

    python benchmarks/int8_activations.py [--models ghostnet_100,...] [--batches 1,32] [--threads 2] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import openvino as ov
import torch

import ghostnets
from ghostnets.data import FashionMNIST
from ghostnets.runtime.export import write_onnx_file
from ghostnets.runtime.quantize import ACTIVATIONS, _ort_quantize, _ov_quantize, default_weight_bits
from ghostnets.runtime.sessions import on_own_thread, onnx_runner, openvino_runner
from ghostnets.runtime.timing import time_interleaved
from int8_weight_range import CALIBRATION_IMAGES, cpu_has_vnni
from trained_224 import checkpoint, data_file, trained

from common import command_line, environment, int8_section, write_section

SIZE = 224


def make_files(name: str, work: Path, bits: int) -> tuple[dict[str, Path], np.ndarray, np.ndarray, np.ndarray]:
    """The float32 ONNX file and the four int8 files of ``name``; the held-out images, their labels and float32's
    top-1 on them."""
    model = ghostnets.create_model(None, checkpoint_path=checkpoint(name)).eval()
    transform = model.record.input.transform()
    test, train = FashionMNIST("test", file=data_file()), FashionMNIST("train", file=data_file())
    picks = np.linspace(0, len(train) - 1, CALIBRATION_IMAGES).astype(int)
    calib = torch.stack([transform(train[int(i)][0]) for i in picks]).numpy()
    x = torch.stack([transform(test[i][0]) for i in range(len(test))])
    labels = np.array([test[i][1] for i in range(len(test))])
    deployed = ghostnets.reparameterize(model).eval()
    with torch.inference_mode():
        reference = torch.cat([deployed(b) for b in x.split(50)]).argmax(1).numpy()
    files = {"float32": work / f"{name}-float32.onnx"}
    write_onnx_file(deployed, x[:1], files["float32"], True, {})
    for activations in ACTIVATIONS:
        path = work / f"{name}-ov-{activations}.xml"
        quantized = on_own_thread(_ov_quantize, files["float32"], calib, True, [], bits, activations)
        ov.save_model(quantized, str(path), compress_to_fp16=False)
        files[f"openvino {activations}"] = path
        files[f"onnxruntime {activations}"] = _ort_quantize(files["float32"], work, calib, True, [], bits,
                                                            activations)
    return files, x.numpy(), labels, reference


def runner(runtime: str, path: Path, batch: int, threads: int):
    if runtime == "openvino":
        return openvino_runner(path, shape=(batch, 3, SIZE, SIZE), threads=threads)
    return onnx_runner(path, threads, stop_spinning=True)


def measure(name: str, batches: list[int], threads: int, runs: int, bits: int) -> tuple[list[str], list[str]]:
    accuracy, latency = [], []
    with tempfile.TemporaryDirectory(prefix="int8-activations-") as work:
        files, x, labels, reference = make_files(name, Path(work), bits)
        float_top1 = 100 * float((reference == labels).mean())
        for variant, path in files.items():
            if variant == "float32":
                continue
            run = runner(variant.split()[0], path, 20, threads)
            top1 = np.concatenate([run(x[i:i + 20]) for i in range(0, len(x), 20)]).argmax(1)
            accuracy.append(f"| {name} | {variant} | **{100 * float((top1 == reference).mean()):.2f} %** | "
                            f"{float_top1:.2f} % | {100 * float((top1 == labels).mean()):.2f} % |")
            print(accuracy[-1], file=sys.stderr, flush=True)
        for batch in batches:
            inputs = np.random.default_rng(0).random((batch, 3, SIZE, SIZE), dtype=np.float32)
            calls = {}
            for runtime in ("openvino", "onnxruntime"):
                calls[f"{runtime} float32"] = runner(runtime, files["float32"], batch, threads)
                for activations in ACTIVATIONS:
                    key = f"{runtime} {activations}"
                    calls[key] = runner(runtime, files[key], batch, threads)
            n = max(5, runs // batch)
            times = time_interleaved({k: (lambda run=run, x=inputs: run(x)) for k, run in calls.items()}, n,
                                     warmup=3, block=max(1, n // 5))
            best_float = [min(a, b) for a, b in zip(times["openvino float32"], times["onnxruntime float32"])]
            for key, t in times.items():
                runtime = key.split()[0]
                own = statistics.median(a / b for a, b in zip(t, times[f"{runtime} float32"]))
                best = statistics.median(a / b for a, b in zip(t, best_float))
                latency.append(f"| {name} | {batch} | {key} | {statistics.median(t):.2f} | {own:.2f} | "
                               f"**{best:.2f}** |")
                print(latency[-1], file=sys.stderr, flush=True)
    return accuracy, latency


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ghostnet_100")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=60, help="timed rounds at batch 1 (batch b: runs / b, at least 5)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    bits = default_weight_bits()
    accuracy = ["| model | int8 file | agreement with float32 | float32 top-1 | int8 top-1 |", "|---|---|---|---|---|"]
    latency = ["| model | batch | file | median ms | / same runtime's float32 | / faster float32 |",
               "|---|---|---|---|---|---|"]
    for name in trained(args.models):
        a, t = measure(name, [int(b) for b in args.batches.split(",")], args.threads, args.runs, bits)
        accuracy, latency = accuracy + a, latency + t
    body = "\n".join([
        "## INT8 with symmetric and asymmetric activations (all-int8 post-training quantization, 224 px)",
        "",
        f"Machine: {environment(args.threads)}. VNNI: {cpu_has_vnni()}.",
        f"Regenerate: `{command_line()}`",
        "",
        f"All-int8 post-training quantization (no accuracy control, {bits}-bit weights: this CPU's default), "
        f"calibrated on {CALIBRATION_IMAGES} training images. OpenVINO: NNCF preset PERFORMANCE (symmetric) or MIXED "
        "(asymmetric); onnxruntime: int8 activations with ActivationSymmetric, or uint8 with a zero point. Agreement "
        "and top-1 on all 2,000 held-out test images:",
        "",
        *accuracy,
        "",
        f"Latency ({args.threads} threads; the files take turns in blocks of calls, five blocks each; ratios: the "
        "median over calls of the ratio to the call of the same index in the other file's block; random inputs):",
        "",
        *latency,
    ])
    print(body)
    if not args.no_write:
        write_section(int8_section("int8_activations"), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

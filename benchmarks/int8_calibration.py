"""All-int8 post-training quantization at 224 px, calibrated otherwise: activation ranges, symmetric activations,
the calibration images; what each costs or buys in agreement and speed.

Each model of benchmarks/trained_224.py (run it first) is quantized all-int8, without accuracy control, by
``ghostnets.runtime.quantize``'s two quantizers (this CPU's default weight bits) in these variants:

- activations asymmetric (ghostnets' default; NNCF preset MIXED, onnxruntime uint8 with a zero point) or symmetric
  (NNCF preset PERFORMANCE, onnxruntime int8 with ``ActivationSymmetric``);
- activation ranges from the calibration minima and maxima (the default) or from histograms (NNCF
  ``RangeEstimatorParametersSet.HISTOGRAM``; onnxruntime ``CalibrationMethod.Percentile``, 99.999 %);
- each on three sets of 300 evenly spaced training images (offset by a third of the spacing): how much of a
  difference is the choice of calibration images alone.

Reported: top-1 agreement with float32 on all 2,000 held-out test images for each variant and set, and, for the
first set's min-max files, latency at each ``--batches`` size in both runtimes, timed in interleaved blocks, with the
ratio to the faster float32 runtime. Writes the ``int8_calibration`` section of BENCHMARKS.md
(``int8_calibration_vnni`` on a CPU with int8 dot products).

    python benchmarks/int8_calibration.py [--models ghostnet_100,...] [--batches 1,32] [--threads 2] [--no-write]
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
from ghostnets.runtime.quantize import _ort_quantize, _ov_quantize, default_weight_bits
from ghostnets.runtime.sessions import on_own_thread, onnx_runner, openvino_runner
from ghostnets.runtime.timing import time_interleaved
from ghostnets.transforms.shuffle_free import without_channel_shuffles
from int8_weight_range import CALIBRATION_IMAGES, cpu_has_vnni
from trained_224 import checkpoint, data_file, trained

from common import command_line, environment, int8_section, write_section

SIZE = 224
SETS = 3
# (runtime, activations, ranges)
VARIANTS = [("openvino", "asymmetric", "minmax"), ("openvino", "asymmetric", "histogram"),
            ("openvino", "symmetric", "minmax"), ("onnxruntime", "asymmetric", "minmax"),
            ("onnxruntime", "asymmetric", "histogram"), ("onnxruntime", "symmetric", "minmax")]


def quantize(variant: tuple[str, str, str], float_onnx: Path, calib: np.ndarray, work: Path, bits: int) -> Path:
    runtime, activations, ranges = variant
    if runtime == "openvino":
        path = work / f"ov-{activations}-{ranges}.xml"
        model = on_own_thread(_ov_quantize, float_onnx, calib, True, [], bits, activations, ranges)
        ov.save_model(model, str(path), compress_to_fp16=False)
        return path
    return _ort_quantize(float_onnx, work, calib, True, [], bits, activations, ranges)


def runner(runtime: str, path: Path, batch: int, threads: int):
    if runtime == "openvino":
        return openvino_runner(path, shape=(batch, 3, SIZE, SIZE), threads=threads)
    return onnx_runner(path, threads, stop_spinning=True)


def held_out(name: str, work: Path) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """The float32 ONNX file of ``name``, the held-out images, their labels, float32's top-1 on them, and the
    calibration sets (each ``CALIBRATION_IMAGES`` evenly spaced training images, offset by a third of the spacing)."""
    model = ghostnets.create_model(None, checkpoint_path=checkpoint(name)).eval()
    transform = model.record.input.transform()
    test, train = FashionMNIST("test", file=data_file()), FashionMNIST("train", file=data_file())
    spacing = len(train) // CALIBRATION_IMAGES
    sets = []
    for k in range(SETS):
        picks = np.linspace(0, len(train) - 1, CALIBRATION_IMAGES).astype(int) + k * spacing // SETS
        sets.append(torch.stack([transform(train[int(i) % len(train)][0]) for i in picks]).numpy())
    x = torch.stack([transform(test[i][0]) for i in range(len(test))])
    labels = np.array([test[i][1] for i in range(len(test))])
    deployed = ghostnets.reparameterize(model).eval()
    with torch.inference_mode():
        reference = torch.cat([deployed(b) for b in x.split(50)]).argmax(1).numpy()
    float_onnx = work / "float32.onnx"
    write_onnx_file(without_channel_shuffles(deployed), x[:1], float_onnx, True, {})  # the graph ghostnets exports
    return float_onnx, x.numpy(), labels, reference, sets


def latency_rows(name: str, files: dict[str, Path], batches: list[int], threads: int, runs: int) -> list[str]:
    rows = []
    for batch in batches:
        inputs = np.random.default_rng(0).random((batch, 3, SIZE, SIZE), dtype=np.float32)
        calls = {key: runner(key.split()[0], path, batch, threads) for key, path in files.items()}
        n = max(5, runs // batch)
        times = time_interleaved({k: (lambda run=run, x=inputs: run(x)) for k, run in calls.items()}, n, warmup=3,
                                 block=max(1, n // 5))
        best_float = [min(a, b) for a, b in zip(times["openvino float32"], times["onnxruntime float32"])]
        for key, t in times.items():
            own = statistics.median(a / b for a, b in zip(t, times[f"{key.split()[0]} float32"]))
            best = statistics.median(a / b for a, b in zip(t, best_float))
            rows.append(f"| {name} | {batch} | {key} | {statistics.median(t):.2f} | {own:.2f} | **{best:.2f}** |")
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


def measure(name: str, batches: list[int], threads: int, runs: int, bits: int) -> tuple[list[str], list[str]]:
    accuracy = []
    with tempfile.TemporaryDirectory(prefix="int8-calibration-") as tmp:
        work = Path(tmp)
        float_onnx, x, labels, reference, sets = held_out(name, work)
        timed = {"openvino float32": float_onnx, "onnxruntime float32": float_onnx}
        for variant in VARIANTS:
            agreements, top1s = [], []
            for k, calib in enumerate(sets):
                folder = work / f"set{k}"
                folder.mkdir(exist_ok=True)
                path = quantize(variant, float_onnx, calib, folder, bits)
                run = runner(variant[0], path, 20, threads)
                top1 = np.concatenate([run(x[i:i + 20]) for i in range(0, len(x), 20)]).argmax(1)
                agreements.append(100 * float((top1 == reference).mean()))
                top1s.append(100 * float((top1 == labels).mean()))
                if k == 0 and variant[2] == "minmax":
                    timed[f"{variant[0]} {variant[1]}"] = path
            float_top1 = 100 * float((reference == labels).mean())
            accuracy.append(f"| {name} | {' | '.join(variant)} | " + " | ".join(f"{a:.2f} %" for a in agreements)
                            + f" | **{statistics.mean(agreements):.2f} %** | {float_top1:.2f} % | "
                            f"{statistics.mean(top1s):.2f} % |")
            print(accuracy[-1], file=sys.stderr, flush=True)
        latency = latency_rows(name, timed, batches, threads, runs)
    return accuracy, latency


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ghostnet_100,mobilenetv3_large_100")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=60, help="timed calls at batch 1 (batch b: runs / b, at least 5)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    bits = default_weight_bits()
    sets = " | ".join(f"set {k + 1}" for k in range(SETS))
    accuracy = [f"| model | runtime | activations | ranges | {sets} | mean | float32 top-1 | int8 top-1 (mean) |",
                "|---" * (7 + SETS) + "|"]
    latency = ["| model | batch | file | median ms | / same runtime's float32 | / faster float32 |",
               "|---|---|---|---|---|---|"]
    for name in trained(args.models):
        a, t = measure(name, [int(b) for b in args.batches.split(",")], args.threads, args.runs, bits)
        accuracy, latency = accuracy + a, latency + t
    body = "\n".join([
        "## INT8 calibrated otherwise: activation ranges, symmetric activations, calibration images (all-int8, 224 px)",
        "",
        f"Machine: {environment(args.threads)}. VNNI: {cpu_has_vnni()}.",
        f"Regenerate: `{command_line()}`",
        "",
        f"All-int8 post-training quantization by ghostnets' quantizers (no accuracy control, {bits}-bit weights: this "
        f"CPU's default), each variant calibrated on {SETS} sets of {CALIBRATION_IMAGES} evenly spaced training "
        "images (offset by a third of the spacing). Activations asymmetric: NNCF preset MIXED, onnxruntime uint8 with "
        "a zero point (ghostnets' default); symmetric: NNCF preset PERFORMANCE, onnxruntime int8 with "
        "ActivationSymmetric. Ranges: minmax, the calibration minima and maxima (the default); histogram: NNCF "
        "RangeEstimatorParametersSet.HISTOGRAM, onnxruntime CalibrationMethod.Percentile (99.999 %). Agreement with "
        "float32 and top-1 on all 2,000 held-out test images:",
        "",
        *accuracy,
        "",
        f"Latency of the first set's min-max files ({args.threads} threads; the files take turns in blocks of calls, "
        "five blocks each; ratios: the median over calls of the ratio to the call of the same index in the other "
        "file's block; random inputs):",
        "",
        *latency,
    ])
    print(body)
    if not args.no_write:
        write_section(int8_section("int8_calibration"), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

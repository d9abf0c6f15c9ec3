"""Deploy latency: every ghostnets CPU path vs timm's port exported as users do today; INT8 on trained models; the
roofline.

Four parts, each its own section of BENCHMARKS.md (``--parts`` picks; all by default), 224 px, 2 threads:

- ``float``: batch-1 latency and batch-32 throughput of the deploy form through PyTorch eager, ``torch.compile``
  (inductor, freezing), ``torch.export`` -> ONNX Runtime / OpenVINO and ``ghostnets export`` -> ONNX Runtime /
  OpenVINO, beside timm's port of the same architecture
  with the same weights exported to ONNX and run by both runtimes (which fold its BatchNorms themselves). All
  callables of one model and batch are timed in interleaved blocks in one run: only ratios carry over.
- ``int8``: ``quantize_model`` (backend auto, accuracy control at 99 % top-1 agreement) on models trained at 224 px
  on the bundled Fashion-MNIST (benchmarks/trained_224.py): agreement and top-1 measured on test images that took no
  part in calibration or in the accuracy control, batch-1 latency of both, the layers kept in float; and, for an
  OpenVINO int8 file, batch-32 throughput against the faster float32 runtime (``--int8-batch``).
  Its section is ``deploy_int8_vnni`` on a CPU with int8 dot products (``common.int8_section``).
- ``roofline``: ghostnet_100 at batch 32 (and 1) on the best runtime against the machine's measured peak: per-kind
  bound, measured time and the gap.

    python benchmarks/deploy_latency.py [--parts float,int8,roofline] [--runs 100] [--threads 2] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch

import ghostnets
from ghostnets.data.fashion_mnist import FashionMNIST
from ghostnets.data.samples import evenly_spaced
from ghostnets.runtime import RuntimeContext, build_runtime, deploy_form, onnx_runner, openvino_runner, time_interleaved
from ghostnets.transforms import randomize_batchnorm
from trained_224 import MODELS as TRAINED
from trained_224 import checkpoint, data_file, train_at_224

from common import command_line, environment, int8_section, write_section

MODELS = ("ghostnet_100", "ghostnetv2_100", "repghostnet_100")
OURS = ("eager", "compile", "export-onnxruntime", "export-openvino", "onnxruntime", "openvino")
THEIRS = ("onnxruntime", "openvino")
SIZE = 224


def _safe(label: str, build, errors: dict):
    try:
        return build()
    except Exception as e:  # a path that cannot be built here is reported, not fatal
        errors[label] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}"
        traceback.print_exc(file=sys.stderr)
        return None


def timm_runners(name: str, weights: dict, workdir: Path, threads: int, batch: int) -> dict:
    """timm's port, same weights, exported to ONNX as it ships (training form, eval mode, dynamic batch) and run by
    both runtimes."""
    import timm

    path = workdir / f"timm_{name}.onnx"
    if not path.exists():
        model = timm.create_model(name).eval()
        model.load_state_dict(weights)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.randn(1, 3, SIZE, SIZE),), str(path), opset_version=17,
                              input_names=["input"], output_names=["logits"], dynamo=False,
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return {"timm onnxruntime": onnx_runner(path, threads),
            "timm openvino": openvino_runner(path, shape=(batch, 3, SIZE, SIZE), threads=threads)}


def float_part(args, workdir: Path) -> str:
    tables = {}
    compile_s: dict[str, float] = {}
    errors: dict[str, str] = {}
    for batch, runs in ((1, args.runs), (32, max(5, args.runs // 10))):
        rows = []
        for name in MODELS:
            model = randomize_batchnorm(ghostnets.create_model(name).eval(), seed=1)
            deployed = deploy_form(model)
            shape = (batch, 3, SIZE, SIZE)
            ctx = RuntimeContext(workdir / name)
            fns = {}
            for rt in OURS:
                start = time.perf_counter()
                fn = _safe(f"{name} {rt} b{batch}", partial(build_runtime, rt, deployed, shape, threads=args.threads,
                                                            context=ctx), errors)
                if fn is None:
                    continue
                fns[rt] = fn
                if rt.startswith("compile"):  # compiled at load
                    compile_s[f"{name} {rt} b{batch}"] = time.perf_counter() - start
            fns.update(timm_runners(name, model.state_dict(), workdir, args.threads, batch))
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            times = time_interleaved({k: partial(f, x) for k, f in fns.items()}, runs, max(3, args.warmup // batch))
            ms = {k: statistics.median(v) for k, v in times.items()}
            ours = {k: v for k, v in ms.items() if not k.startswith("timm")}
            best_ours = min(ours, key=ours.get)
            best_theirs = min(("timm onnxruntime", "timm openvino"), key=ms.get)
            cells = [f"{ms[k]:.2f}" if k in ms else "—" for k in (*OURS, "timm onnxruntime", "timm openvino")]
            ratio = ms[best_ours] / ms[best_theirs]
            rows.append(f"| {name} | " + " | ".join(cells) + f" | {best_ours} | **{ratio:.2f}** |")
            print(rows[-1], file=sys.stderr, flush=True)
        tables[batch] = rows
    header = ("| model | eager | compile | export->ORT | export->OV | ORT | OV | timm ORT | timm OV | best ghostnets | "
              "best ghostnets / best timm |")
    rule = "|---|" + "---|" * 10
    met = sum(float(r.rsplit("**", 2)[-2]) <= 0.7 for r in tables[1])
    lines = [
        "## Deploy latency: every ghostnets CPU path vs timm exported (float32)",
        "",
        f"{SIZE} px, {args.threads} threads, median ms per call (batch 1: {args.runs} calls; batch 32: "
        f"{max(5, args.runs // 10)} calls), all callables of one model and batch in interleaved blocks of 10. "
        "ghostnets: the deploy form (BN folded, RepGhost fused, channels_last) in PyTorch eager; `compile`: "
        "torch.compile (inductor, freezing: weights as constants, pre-packed); `export->`: torch.export -> ONNX "
        "(dynamo exporter) / OpenVINO's PyTorch frontend; ORT / OV: `ghostnets export` (TorchScript ONNX) in ONNX "
        "Runtime (sequential, all graph optimisations) / OpenVINO (LATENCY hint, f32). timm: its port with the "
        "same weights, exported to ONNX as it ships. Random weights with randomised BatchNorm statistics.",
        f"Machine: {environment(args.threads)}.",
        f"Regenerate: `{command_line()}`.",
        "Target: best ghostnets / best timm <= 0.7.",
        "",
        "Batch 1 (ms):",
        "",
        header, rule, *tables[1],
        "",
        "Batch 32 (ms per batch of 32):",
        "",
        header, rule, *tables[32],
        "",
        f"float32 target (batch 1) met by {met}/{len(MODELS)} models.",
    ]
    if compile_s:
        lines += ["", "Compile time (s, to the end of the first call): " + ", ".join(
            f"{k} {v:.0f}" for k, v in compile_s.items())]
    if errors:
        lines += ["", "Not built: " + "; ".join(f"{k}: {v}" for k, v in errors.items())]
    return "\n".join(lines)


def int8_part(args, workdir: Path) -> str:
    from ghostnets.runtime.quantize import quantize_model

    test = FashionMNIST("test", file=data_file())
    train = FashionMNIST("train", file=data_file())
    rows, notes = [], []
    for name in args.int8_models.split(","):
        if not checkpoint(name).exists():
            train_at_224(name, threads=args.threads)
        model = ghostnets.create_model(None, checkpoint_path=checkpoint(name)).eval()
        spec = model.record.input
        transform = spec.transform()
        picks = evenly_spaced(len(test), len(test))
        calib_idx = evenly_spaced(len(train), args.calib)
        if args.control_from == "test":
            control = picks[0::4][: args.control]  # accuracy control / backend choice
            control_x = torch.stack([transform(test[i][0]) for i in control])
        else:  # agreement needs no labels: training images the calibration did not use
            unused = sorted(set(range(len(train))) - set(calib_idx))
            control = [unused[i] for i in evenly_spaced(len(unused), args.control)]
            control_x = torch.stack([transform(train[i][0]) for i in control])
        left_out = set(control) if args.control_from == "test" else set()
        report_idx = [i for i in picks if i not in left_out]  # agreement and top-1 reported on these
        calib = torch.stack([transform(train[i][0]) for i in calib_idx])
        report_x = torch.stack([transform(test[i][0]) for i in report_idx])
        labels = torch.tensor([test[i][1] for i in report_idx])
        deployed = deploy_form(model)
        start = time.perf_counter()
        try:
            report = quantize_model(deployed, workdir / f"{name}_int8", spec=spec, calib=calib, held_out=control_x,
                                    backend="auto", overwrite=True, threads=args.threads,
                                    min_agreement=args.control_bar / 100,
                                    runs=args.int8_runs, weight_bits=args.int8_weight_bits,
                                    **({"ranges": args.int8_ranges} if args.int8_ranges else {}))
        except Exception as e:
            rows.append(f"| {name} | — | — | — | — | — | — | failed: {str(e)[:300]} |")
            print(rows[-1], file=sys.stderr, flush=True)
            continue
        seconds = time.perf_counter() - start
        with torch.inference_mode():
            float_top1 = torch.cat([deployed(b) for b in report_x.split(64)]).argmax(1)
        run = build_int8_runner(report.path, args.threads)
        int8_top1 = torch.from_numpy(np.concatenate([run(b.numpy()) for b in report_x.split(1)]).argmax(1))
        agreement = (int8_top1 == float_top1).float().mean().item()
        acc_f = (float_top1 == labels).float().mean().item()
        acc_i = (int8_top1 == labels).float().mean().item()
        kept = report.kept_float
        batched = (int8_batched(report.path, deployed, batch=args.int8_batch, runs=args.int8_runs,
                                threads=args.threads)
                   if args.int8_batch and report.path.suffix == ".xml" else "—")  # an onnxruntime file: batch 1
        rows.append(f"| {name} | {report.backend} ({report.method}, {report.weight_bits}-bit weights, "
                    f"{report.ranges} ranges) | "
                    f"{agreement:.1%} | "
                    f"{acc_f:.1%} | {acc_i:.1%} | {report.float_ms:.2f} | {report.int8_ms:.2f} | "
                    f"**{report.int8_ms / report.float_ms:.2f}** | {batched} | {len(kept)}{': ' if kept else ''}"
                    f"{', '.join(kept[:6])}{' ...' if len(kept) > 6 else ''} | {seconds:.0f} |")
        notes.append(f"- {name}: {report.reason}. Candidates (on the control images): "
                     + "; ".join(f.summary() for f in report.candidates.values()))
        print(rows[-1], file=sys.stderr, flush=True)
    control_words = "test images" if args.control_from == "test" else \
        "other training images (agreement with float32 needs no labels)"
    reported = f"the other {len(test) - args.control} test images" if args.control_from == "test" else \
        f"all {len(test)} test images"
    return "\n".join([
        "## INT8 on models trained at 224 px (accuracy-aware post-training quantization)",
        "",
        f"Each model trained at 224 px on the bundled Fashion-MNIST (benchmarks/trained_224.py). `quantize_model` "
        f"(backend auto, min agreement {args.control_bar} % on its own images: a margin over the 99 % target), "
        f"calibrated on {args.calib} training images; its accuracy control and choice of backend use "
        f"{args.control} {control_words}; agreement (int8 top-1 = float32 top-1) and top-1 are "
        f"measured on {reported}, which took no part in either. Latency: "
        f"batch 1, {args.threads} threads, the quantizer's interleaved timing of the float32 and int8 files on the "
        "chosen runtime.",
        f"Machine: {environment(args.threads)}.",
        f"Regenerate: `{command_line()}`.",
        "Target: int8 / float32 <= 0.6 with >= 99 % agreement.",
        "",
        "| model | backend (method) | agreement | float32 top-1 | int8 top-1 | float32 ms | int8 ms | int8 / float32 | "
        f"batch {args.int8_batch}: float32 ms, int8 ms, int8 / faster float32 | layers kept in float | quantize s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        *notes,
    ])


def int8_batched(path: Path, deployed: torch.nn.Module, *, batch: int, runs: int, threads: int) -> str:
    """Batch ``batch``: the int8 file at ``path`` in OpenVINO (an IR, or a QDQ ONNX file, which OpenVINO reads as
    FakeQuantize and runs as int8), reshaped, against the float32 deploy form in both runtimes (the graph
    ``ghostnets export`` writes), interleaved blocks."""
    from ghostnets.runtime.export import write_onnx_file
    from ghostnets.transforms.shuffle_free import without_channel_shuffles

    path = Path(path)
    float_onnx = path.with_name(path.stem + "-float32-dynamic.onnx")
    write_onnx_file(without_channel_shuffles(deployed), torch.randn(1, 3, SIZE, SIZE), float_onnx, True, {})
    shape = (batch, 3, SIZE, SIZE)
    runs_of = {"onnxruntime": onnx_runner(float_onnx, threads, stop_spinning=True),
               "openvino": openvino_runner(float_onnx, shape=shape, threads=threads),
               "int8": openvino_runner(path, shape=shape, threads=threads)}
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    calls = max(5, runs // batch)
    times = time_interleaved({k: partial(run, x) for k, run in runs_of.items()}, calls, warmup=2,
                             block=max(1, calls // 5))
    faster = min(("onnxruntime", "openvino"), key=lambda k: np.median(times[k]))
    ratio = np.median([a / b for a, b in zip(times["int8"], times[faster])])
    return f"{np.median(times[faster]):.1f} ({faster}), {np.median(times['int8']):.1f}, **{ratio:.2f}**"


def build_int8_runner(path: Path, threads: int):
    path = Path(path)
    if path.suffix == ".xml":
        return openvino_runner(path, shape=(1, 3, SIZE, SIZE), threads=threads)
    return onnx_runner(path, threads)


def roofline_part(args, workdir: Path) -> str:
    from ghostnets.measure.machine import MachineLimits
    from ghostnets.measure.roofline import roofline

    limits = MachineLimits.measure(args.threads)
    model = ghostnets.create_model("ghostnet_100").eval()
    lines = ["## The machine's limit: ghostnet_100 against the roofline", "",
             f"ghostnet_100 at {SIZE} px, {args.threads} threads. Machine: {environment(args.threads)}; "
             f"{limits.describe()}. Bound per layer: max(2 MAdds / peak FLOP/s, bytes / copy bandwidth), bytes = "
             "input + weights read and output written once (in-place activations assumed fused); measured: the "
             "runtime's own per-node profile, attributed to layers by the ONNX scope names; gap = end-to-end "
             "median / bound.",
             f"Regenerate: `{command_line()}`.", "Target: within 2x of the bound at batch 32.", ""]
    for runtime in ("openvino", "onnxruntime"):
        for batch in (32, 1):
            r = roofline(model, SIZE, batch=batch, threads=args.threads, runtime=runtime,
                         runs=max(5, args.runs // (10 if batch > 1 else 2)), limits=limits)
            lines += [f"**{runtime}, batch {batch}:** end-to-end {r.end_to_end_median_ms:.2f} ms, bound "
                      f"{r.bound_ms:.2f} ms, gap **{r.gap:.2f}x**"
                      + (f" (against the fused floor {r.floor_bound_ms:.2f} ms: {r.floor_gap:.2f}x)"
                         if r.floor_bound_ms else ""), "",
                      "| kind | bound ms | measured ms | share of measured |", "|---|---|---|---|"]
            lines += [f"| {k} | {b:.2f} | {m:.2f} | {s:.0%} |" for k, b, m, s in r.by_kind()]
            lines.append("")
            print("\n".join(lines[-12:]), file=sys.stderr, flush=True)
    return "\n".join(lines)


PARTS = {"float": ("deploy_latency", float_part), "int8": ("deploy_int8", int8_part),
         "roofline": ("deploy_roofline", roofline_part)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calib", type=int, default=300, help="INT8 calibration images (training split)")
    parser.add_argument("--control", type=int, default=500, help="test images for INT8's accuracy control")
    parser.add_argument("--control-from", choices=("test", "train"), default="test",
                        help="where the control images come from: test images (then left out of the reported "
                        "agreement) or training images the calibration did not use")
    parser.add_argument("--control-bar", type=float, default=99.5, help="agreement (%%) the accuracy control must "
                        "reach on its images, above the 99 %% target so that the images it never saw clear 99 %%")
    parser.add_argument("--int8-runs", type=int, default=60, help="batch-1 timed calls per INT8 candidate")
    parser.add_argument("--int8-models", default=",".join(TRAINED))
    parser.add_argument("--int8-ranges", choices=("minmax", "histogram"), help="activation ranges (default: "
                        "quantize_model's)")
    parser.add_argument("--int8-batch", type=int, default=32, help="batch size of the int8 throughput figure (0: none)")
    parser.add_argument("--int8-weight-bits", type=int, choices=(7, 8), help="default: by this CPU "
                        "(ghostnets.runtime.quantize.default_weight_bits)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="ghostnets-deploy-latency-"))
    for part in args.parts.split(","):
        section, fn = PARTS[part]
        body = fn(args, workdir)
        print(body, flush=True)
        if not args.no_write:
            write_section(int8_section(section) if part == "int8" else section, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

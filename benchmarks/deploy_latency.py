"""Deploy latency: ghostnets' best runtime vs timm's port exported as users do today, and INT8 vs float32.

Batch 1, 224 px, 2 threads. For each model: the ghostnets deploy form in PyTorch eager, ONNX Runtime and OpenVINO
(float32), timm's port of the same architecture with the same weights exported to ONNX Runtime and OpenVINO (the
runtimes fold its BatchNorms themselves), and ghostnets INT8 (``quantize_model``, backend auto). All callables of
one model are timed in interleaved blocks in the same run. MobileNetV3-Large and ShuffleNetV2 (torchvision, BN
folded) run beside them under the same protocol. Writes the ``deploy_latency`` section of BENCHMARKS.md.

    python benchmarks/deploy_latency.py [--runs 200] [--threads 2] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import torch

import ghostnets
from ghostnets.data.samples import calibration_images, held_out_images
from ghostnets.data.transforms import InputSpec
from ghostnets.measure.bench import BASELINES as BASELINE_TOP1
from ghostnets.runtime import RuntimeContext, build_runtime, deploy_form, onnx_runner, openvino_runner, time_interleaved
from ghostnets.transforms import randomize_batchnorm

from common import environment, write_section

MODELS = ("ghostnet_100", "ghostnetv2_100", "repghostnet_100")
BASELINES = ("tv:mobilenet_v3_large", "tv:shufflenet_v2_x1_0", "tv:shufflenet_v2_x1_5")
FLOAT_RUNTIMES = ("eager", "onnxruntime", "openvino")


def timm_callables(name: str, weights: dict, workdir: Path, threads: int) -> dict:
    """timm's port, same weights, exported to ONNX as it ships (training form, eval mode) and run by both runtimes."""
    import timm

    model = timm.create_model(name).eval()
    model.load_state_dict(weights)
    path = workdir / f"timm_{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(path), opset_version=17,
                          input_names=["input"], output_names=["logits"], dynamo=False)
    return {"timm onnxruntime": onnx_runner(path, threads),
            "timm openvino": openvino_runner(path, shape=(1, 3, 224, 224), threads=threads)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calib", type=int, default=128, help="calibration / held-out images for INT8")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    spec = InputSpec()
    calib, held_out = calibration_images(spec, None, args.calib), held_out_images(spec, None, args.calib)
    x = torch.randn(1, 3, 224, 224).numpy()
    workdir = Path(tempfile.mkdtemp(prefix="ghostnets-deploy-latency-"))
    rows, met_float, met_int8 = [], 0, 0
    for name in MODELS:
        # random weights with non-trivial BatchNorm statistics: int8 agreement is then measured on a model whose
        # logits are not all near zero (no trained ImageNet weights can be fetched here)
        model = randomize_batchnorm(ghostnets.create_model(name).eval(), seed=1)
        deployed = deploy_form(model)
        context = RuntimeContext(workdir, calib=calib, held_out=held_out, threads=args.threads)
        fns = {f"ghostnets {rt}": build_runtime(rt, deployed, (1, 3, 224, 224), threads=args.threads,
                                                 context=context) for rt in (*FLOAT_RUNTIMES, "int8")}
        fns.update(timm_callables(name, model.state_dict(), workdir, args.threads))
        times = time_interleaved({k: (lambda f=f: f(x)) for k, f in fns.items()}, args.runs, args.warmup)
        ms = {k: statistics.median(v) for k, v in times.items()}
        ours = min(ms[f"ghostnets {rt}"] for rt in FLOAT_RUNTIMES)
        theirs = min(ms["timm onnxruntime"], ms["timm openvino"])
        int8 = ms["ghostnets int8"]
        note = context.notes.get(name, "")
        agreement = float(note.rsplit(" ", 1)[-1].rstrip("%")) if note else float("nan")
        met_float += ours / theirs <= 0.7
        met_int8 += int8 / ours <= 0.6 and agreement >= 99.0
        rows.append(f"| {name} | {ms['ghostnets eager']:.2f} | {ms['ghostnets onnxruntime']:.2f} | "
                    f"{ms['ghostnets openvino']:.2f} | {ms['timm onnxruntime']:.2f} | {ms['timm openvino']:.2f} | "
                    f"**{ours / theirs:.2f}** | {int8:.2f} ({note.split(',')[0].removeprefix('int8 via ')}) | "
                    f"**{int8 / ours:.2f}** | {agreement:.1f} % |")
        print(rows[-1], file=sys.stderr, flush=True)
    base_rows = []
    for name in (*MODELS, *BASELINES):
        model = ghostnets.create_model(name).eval()
        deployed = deploy_form(model)
        fns = {rt: build_runtime(rt, deployed, (1, 3, 224, 224), threads=args.threads,
                                 context=RuntimeContext(workdir)) for rt in FLOAT_RUNTIMES}
        times = time_interleaved({k: (lambda f=f: f(x)) for k, f in fns.items()}, args.runs // 2, args.warmup)
        ms = {k: statistics.median(v) for k, v in times.items()}
        madds = ghostnets.count_madds(model) / 1e6
        top1 = BASELINE_TOP1[name.removeprefix("tv:")] if name.startswith("tv:") else ghostnets.model_info(name).top1
        base_rows.append(f"| {name} | {madds:.0f} | {top1:.1f} | {ms['eager']:.2f} | {ms['onnxruntime']:.2f} | "
                         f"{ms['openvino']:.2f} |")
        print(base_rows[-1], file=sys.stderr, flush=True)
    body = "\n".join([
        "## Deploy latency: ghostnets' best runtime vs timm exported, INT8 vs float32",
        "",
        f"Batch 1, 224x224, {args.threads} threads, float32 unless marked. Each model's callables are timed in "
        f"interleaved blocks of 10 after {args.warmup} warm-up calls, {args.runs} calls each; median ms. ghostnets: "
        "the deploy form (BN folded, RepGhost fused) in PyTorch eager, and exported by `ghostnets export` to "
        "onnxruntime (sequential, all graph optimisations) and OpenVINO (LATENCY hint, f32 precision hint). timm: "
        "its port with the same weights, exported to ONNX as it ships and run by the same two runtimes. INT8: "
        "`quantize_model` with backend auto (both backends built and timed, the faster kept), calibrated on "
        f"{args.calib} bundled Fashion-MNIST training images (RGB, 224 px); agreement = top-1 of INT8 equal to "
        f"float32's on {args.calib} held-out test images, for random weights with randomised BatchNorm statistics "
        "(no trained ImageNet weights can be fetched here; a trained model's agreement is in the Fashion-MNIST "
        "section).",
        f"Machine: {environment(args.threads)}.",
        "Regenerate: `python benchmarks/deploy_latency.py`.",
        "Targets: best ghostnets float32 / best timm export <= 0.7; ghostnets INT8 / best ghostnets float32 <= 0.6 "
        "with >= 99 % agreement.",
        "",
        "| model | ghostnets eager | ghostnets onnxruntime | ghostnets OpenVINO | timm onnxruntime | timm OpenVINO | "
        "best ghostnets / best timm | ghostnets INT8 | INT8 / best float32 | INT8 agreement |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"float32 target met by {met_float}/{len(MODELS)} models; INT8 target by {met_int8}/{len(MODELS)}.",
        "",
        "GhostNet beside the baselines it is judged against (same protocol, float32, ms; MAdds counted here, top-1 "
        "from the papers / torchvision):",
        "",
        "| model | MAdds (M) | ImageNet top-1 | eager | onnxruntime | OpenVINO |",
        "|---|---|---|---|---|---|",
        *base_rows,
    ])
    print(body)
    if not args.no_write:
        write_section("deploy_latency", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

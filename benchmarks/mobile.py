"""The comparison the GhostNet papers print, measured here: every registered mobile network beside GhostNet,
GhostNetV2 and RepGhostNet at comparable MAdds, batch-1 CPU latency per runtime, Pareto fronts of top-1 vs latency.

Networks are grouped in MAdds bands; each band holds one GhostNet as its reference, and all callables of a band
(every model x eager deploy form, ONNX Runtime, OpenVINO, INT8) are timed round-robin in the same rounds, so the
ratios to the band's GhostNet share the machine's state. Top-1 is each card's (the papers' / torchvision's ImageNet
figures; random weights are timed: no ImageNet files can be fetched here). A per-layer profile of the band's fastest
network against its GhostNet says where the time goes (MAdds and bytes moved per layer type). Writes the ``mobile``
section of BENCHMARKS.md and the plots to docs/plots/mobile/.

    python benchmarks/mobile.py [--runs 30] [--threads 1] [--no-int8] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

import ghostnets
from ghostnets.data.samples import calibration_images, held_out_images
from ghostnets.measure.layers import profile_layers
from ghostnets.measure.pareto import pareto_front, plot_results
from ghostnets.runtime import RuntimeContext, build_runtime, deploy_form

from common import ROOT, command_line, environment, paired_ratio, time_interleaved, write_section

# (reference, the band's other networks as name patterns); names not registered are skipped
BANDS = (
    ("ghostnet_050", ["repghostnet_050", "mobilenetv3_small_*", "shufflenetv2_x0_5", "shufflenetv1_g3_050",
                      "shufflenetv1_g8_050"]),
    ("ghostnet_100", ["ghostnetv2_100", "repghostnet_100", "mobilenetv3_large_*", "shufflenetv2_x1_0",
                      "shufflenetv1_g3_100", "shufflenetv1_g8_100", "mobilenetv2_050", "mobilenetv2_075"]),
    ("ghostnet_130", ["ghostnetv2_130", "repghostnet_130", "mobilenetv2_100", "shufflenetv2_x1_5",
                      "shufflenetv1_g3_150", "edgenext_xx_small", "mobilenetv2_140", "shufflenetv2_x2_0",
                      "shufflenetv1_g3_200", "edgenext_x_small"]),
)
PLOTS = ROOT / "docs" / "plots" / "mobile"


def band_names(reference: str, patterns: list[str]) -> list[str]:
    names = [reference]
    for pattern in patterns:
        names += [n for n in ghostnets.list_models(pattern) if n not in names]
    return names


def runners(name: str, shape: tuple[int, ...], runtimes: list[str], context: RuntimeContext, threads: int) -> dict:
    deployed = deploy_form(ghostnets.create_model(name).eval())
    x = torch.randn(*shape).numpy()
    out = {}
    for rt in runtimes:
        try:
            f = build_runtime(rt, deployed, shape, threads=threads, context=context)
        except Exception as e:  # a runtime that cannot take a model is a finding, not a crash
            print(f"{name} {rt}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        out[(name, rt)] = lambda f=f: f(x)
    return out


def why(fast: str, reference: str) -> str:
    """Where the time goes: MAdds and bytes moved per layer type, the fast network against the reference."""
    lines = []
    for name in (reference, fast):
        profile = profile_layers(deploy_form(ghostnets.create_model(name).eval()))
        by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for layer in profile.layers:
            kind = layer.type.replace("aten.", "")
            by_type[kind][0] += layer.madds
            by_type[kind][1] += layer.bytes_moved
        top = sorted(by_type.items(), key=lambda kv: -kv[1][1])[:4]
        parts = ", ".join(f"{k} {m / 1e6:.0f}M MAdds / {b / 2**20:.1f} MiB" for k, (m, b) in top)
        lines.append(f"{name}: {profile.madds / 1e6:.0f}M MAdds, {profile.bytes_moved / 2**20:.1f} MiB moved "
                     f"(intensity {profile.intensity:.1f} MAdds/byte); by bytes moved: {parts}")
    return "; ".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calib", type=int, default=64, help="calibration / held-out images for INT8")
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runtimes = ["eager", "onnxruntime", "openvino"] + ([] if args.no_int8 else ["int8"])
    workdir = Path(tempfile.mkdtemp(prefix="ghostnets-mobile-"))

    rows, table, whys = [], [], []
    for reference, patterns in BANDS:
        names = band_names(reference, patterns)
        fns: dict = {}
        for name in names:
            spec = ghostnets.model_info(name).eval_transform
            shape = (1, 3, spec.size, spec.size)
            context = RuntimeContext(workdir, calib=calibration_images(spec, None, args.calib),
                                     held_out=held_out_images(spec, None, args.calib), threads=args.threads)
            fns.update(runners(name, shape, runtimes, context, args.threads))
        with torch.inference_mode():
            times = time_interleaved(fns, args.runs, args.warmup)
        best_of = {}
        for name in names:
            card = ghostnets.model_info(name)
            ms = {rt: statistics.median(times[(name, rt)]) for rt in runtimes if (name, rt) in times}
            for rt, value in ms.items():
                rows.append(dict(model=name, runtime=rt, batch=1, median_ms=value, madds=card.madds, top1=card.top1))
            best = min((rt for rt in ms if rt != "int8"), key=ms.get)
            best_of[name] = ms[best]
            ratio = {rt: paired_ratio(times[(name, rt)], times[(reference, rt)]) for rt in ms
                     if (reference, rt) in times}
            cells = [f"{ms[rt]:.1f} ({ratio.get(rt, float('nan')):.2f})" if rt in ms else "–" for rt in runtimes]
            table.append(f"| {name} | {card.madds / 1e6:,.0f} | {card.top1:.1f} | {card.eval_transform.size} | "
                         + " | ".join(cells) + f" | {best} |")
            print(table[-1], file=sys.stderr, flush=True)
        fastest = min(best_of, key=best_of.get)
        if fastest != reference:
            whys.append(f"- Band of {reference}: fastest {fastest}. " + why(fastest, reference))
        front = pareto_front([(best_of[n], ghostnets.model_info(n).top1) for n in names])
        whys.append(f"- Band of {reference}, Pareto front of top-1 vs best float32 latency: "
                    + ", ".join(names[i] for i in front))
    plots = plot_results(rows, PLOTS)
    body = "\n".join([
        "## Mobile networks beside the Ghost family (batch 1, CPU)",
        "",
        f"Batch 1 at each card's input size, {args.threads} thread(s), deploy forms (BN folded); per band, every "
        f"network x runtime timed round-robin in the same rounds ({args.warmup} warm-up, {args.runs} rounds); median "
        "ms, and in brackets the median per-round ratio to the band's GhostNet in the same runtime. INT8: "
        f"`quantize_model` (backend auto) calibrated on {args.calib} bundled images. Random weights; top-1 is the "
        "card's ImageNet figure. Plots (Pareto fronts per runtime): "
        + ", ".join(f"`{p.relative_to(ROOT)}`" for p in plots) + ".",
        f"Machine: {environment(args.threads)}.",
        f"Regenerate: `{command_line()}`.",
        "",
        "| model | MAdds (M) | top-1 | px | " + " | ".join(f"{rt} ms (/ GhostNet)" for rt in runtimes)
        + " | best float32 |",
        "|---|---|---|---|" + "---|" * len(runtimes) + "---|",
        *table,
        "",
        "Where the time goes (per-layer profile of the deploy forms; `ghostnets profile` gives the full table):",
        "",
        *whys,
    ])
    print(body)
    if not args.no_write:
        write_section("mobile", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

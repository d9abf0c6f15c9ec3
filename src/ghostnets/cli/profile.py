"""``ghostnets profile NAME|--checkpoint FILE``: MAdds, memory traffic and arithmetic intensity, layer by layer.

The training form and the deploy form (``reparameterize``) side by side, then the deploy form's heaviest layers by
MAdds and by bytes moved: depthwise convs and element-wise ops move about as many bytes as they do MAdds, so they are
memory-bound where the 1x1 convs are not.

``--roofline``: the deploy form exported and profiled on a runtime (OpenVINO or ONNX Runtime), each layer's roofline
lower bound beside the runtime's own per-node time, by kind, and the total gap (:mod:`ghostnets.measure.roofline`).
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

from ..table import format_table

MB = 1e6
NOTE = ("MAdds: conv + linear multiply-adds (the papers' convention). Bytes: per layer, input activations + weights "
        "read and the output written once (float32); element-wise ops outside layers (residual add, concat, SE/DFC "
        "gates) move bytes but count no MAdds; views move nothing. Activations: every new output tensor summed; "
        "peak: the most alive at once in this eager pass, input included. MB = 10^6 bytes.")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="per-layer MAdds, bytes moved and arithmetic intensity, training vs deploy "
                       "form; --roofline: against the machine's limit and the runtime's own profile")
    p.add_argument("model", nargs="?", help="registered model name (optional with a ghostnets checkpoint)")
    p.add_argument("--checkpoint", type=Path, help="weights file; ghostnets files record model, classes, input size")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="image size (default: the model's evaluation crop)")
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    p.add_argument("--top", type=int, default=10, metavar="N", help="heaviest layers to list (default 10)")
    roof = p.add_argument_group("roofline", "--roofline: each layer's bound beside the runtime's own per-node profile")
    roof.add_argument("--roofline", action="store_true", help="export the deploy form, profile it on --runtime and "
                      "set each layer's measured time beside its roofline lower bound")
    roof.add_argument("--runtime", choices=("openvino", "onnxruntime"), default="openvino",
                      help="runtime to profile (default openvino)")
    roof.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    roof.add_argument("--threads", type=int, default=2, help="runtime threads (default 2)")
    roof.add_argument("--runs", type=int, default=20, help="timed runs after 5 warm-up runs (default 20)")
    roof.add_argument("--peak-gflops", type=float, metavar="GFLOPS",
                      help="take this peak float32 GFLOP/s instead of measuring it (with --bandwidth-gbs)")
    roof.add_argument("--bandwidth-gbs", type=float, metavar="GBS",
                      help="take this memory bandwidth in GB/s instead of measuring it (with --peak-gflops)")
    p.set_defaults(run=run)


def _markdown(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _summary_rows(training, deploy) -> list[list[str]]:
    def row(label: str, fmt, get) -> list[str]:
        return [label, fmt(get(training)), fmt(get(deploy))]

    return [
        row("params", "{:,}".format, lambda p: p.params),
        row("MAdds (M)", "{:.1f}".format, lambda p: p.madds / 1e6),
        row("activations (MB, sum)", "{:.2f}".format, lambda p: p.activation_bytes / MB),
        row("activations (MB, peak)", "{:.2f}".format, lambda p: p.peak_activation_bytes / MB),
        row("bytes moved (MB)", "{:.2f}".format, lambda p: p.bytes_moved / MB),
        row("intensity (MAdds/byte)", "{:.2f}".format, lambda p: p.intensity),
        row("layers + ops", str, lambda p: len(p.layers)),
    ]


def _layer_rows(layers) -> list[list[str]]:
    return [[r.name, r.type, "x".join(map(str, r.output_shape)), f"{r.madds / 1e6:.2f}", f"{r.bytes_read / MB:.3f}",
             f"{r.bytes_written / MB:.3f}", f"{r.intensity:.2f}"] for r in layers]


def _check_args(args: argparse.Namespace) -> None:
    from ..models.input_check import MIN_INPUT_SIZE

    if args.model is None and args.checkpoint is None:
        raise ValueError("name a model (`ghostnets list` shows them) or pass --checkpoint FILE")
    if args.top < 1:
        raise ValueError(f"--top must be >= 1, got {args.top}")
    if args.input_size is not None and min(args.input_size) < MIN_INPUT_SIZE:
        h, w = args.input_size
        raise ValueError(f"--input-size must be at least {MIN_INPUT_SIZE} {MIN_INPUT_SIZE} (the models downsample "
                         f"by 32), got {h} {w}")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise FileNotFoundError(f"{args.checkpoint} does not exist (or is not a file)")
    if not args.roofline:
        return
    for flag, value in (("--batch", args.batch), ("--threads", args.threads), ("--runs", args.runs)):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    if (args.peak_gflops is None) != (args.bandwidth_gbs is None):
        raise ValueError("pass both --peak-gflops and --bandwidth-gbs (fixed machine limits), or neither (measure "
                         "them)")
    if args.peak_gflops is not None and min(args.peak_gflops, args.bandwidth_gbs) <= 0:
        raise ValueError(f"--peak-gflops and --bandwidth-gbs must be > 0, got {args.peak_gflops} and "
                         f"{args.bandwidth_gbs}")
    from ..runtime.sessions import require

    require(args.runtime, f"--roofline --runtime {args.runtime}")  # a missing package: say so before any work
    require("onnx", f"--roofline --runtime {args.runtime}")


def _ms(value: float) -> str:
    return f"{value:.3f}"


def _run_roofline(args: argparse.Namespace, model, size: tuple[int, int]) -> int:
    from ..measure.machine import MachineLimits
    from ..measure.roofline import NOTE as ROOF_NOTE
    from ..measure.roofline import roofline

    limits = (MachineLimits(args.threads, args.peak_gflops, args.bandwidth_gbs) if args.peak_gflops is not None
              else None)
    report = roofline(model, size, batch=args.batch, threads=args.threads, runtime=args.runtime, runs=args.runs,
                      limits=limits)
    if args.format == "json":
        print(json.dumps(report.as_dict(args.top), indent=2))
        return 0
    table = _markdown if args.format == "markdown" else format_table
    total = report.measured_ms or 1.0
    layer_rows = [[r.name, r.kind, f"{r.madds / 1e6:.2f}", f"{r.bytes / MB:.3f}", _ms(r.bound_ms),
                   _ms(r.measured_ms) if r.nodes else ("fused" if r.fused else "-"),
                   f"{r.ratio:.1f}" if r.ratio is not None and r.nodes else "-", f"{r.measured_ms / total:.1%}"]
                  for r in report.top(args.top)]
    kind_rows = [[k, _ms(b), _ms(m), f"{m / b:.1f}" if b > 0 else "-", f"{s:.1%}"] for k, b, m, s in report.by_kind()]
    totals = [["bound (sum of layers)", _ms(report.bound_ms)],
              ["measured (sum of runtime nodes)", _ms(report.measured_ms)],
              ["end-to-end median (no profiling)", _ms(report.end_to_end_median_ms)],
              ["gap: end-to-end / bound", f"{report.gap:.2f}x"]]
    if report.floor_bound_ms:
        totals += [["fused floor (whole model)", _ms(report.floor_bound_ms)],
                   ["end-to-end / fused floor", f"{report.floor_gap:.2f}x"]]
    unattributed = next((r for r in report.layers if r.name == "(unattributed)"), None)
    heading = "### " if args.format == "markdown" else ""
    title = (f"{report.model} at {size[0]}x{size[1]}, batch {args.batch}, {args.runtime}, {args.threads} thread(s), "
             f"{args.runs} runs")
    sections = [
        (f"{title}: top {args.top} layers by measured time",
         table(["layer", "kind", "MAdds (M)", "MB", "bound ms", "measured ms", "measured/bound", "share"],
               layer_rows)),
        ("where the time goes, by kind", table(["kind", "bound ms", "measured ms", "measured/bound", "share"],
                                               kind_rows)),
        ("totals", table(["", "ms"], totals)),
    ]
    print("\n\n".join(f"{heading}{head}\n\n{body}" for head, body in sections))
    machine = "machine: " + _limits_line(report.limits, args.peak_gflops is not None)
    lines = [machine]
    if unattributed is not None:
        lines.append("(unattributed): runtime nodes of no layer: " + ", ".join(unattributed.types))
    lines.append(ROOF_NOTE)
    print("\n" + "\n".join(line if args.format == "markdown" else textwrap.fill(line, 120) for line in lines))
    return 0


def _limits_line(limits, given: bool) -> str:
    return limits.describe() + (" (given by --peak-gflops / --bandwidth-gbs, not measured)" if given else
                                " (measured now)")


def run(args: argparse.Namespace) -> int:
    from ..measure import profile_layers
    from ..record import is_deploy
    from ..transforms import reparameterize
    from .options import load_model

    _check_args(args)
    model = load_model(args.model, args.checkpoint)
    spec = model.record.input
    size = tuple(args.input_size) if args.input_size else (spec.size, spec.size)
    name = model.record.name
    if args.roofline:
        return _run_roofline(args, model, size)
    already = is_deploy(model)
    training = profile_layers(model, size)
    deploy = training if already else profile_layers(reparameterize(model), size)

    if args.format == "json":
        print(json.dumps({"model": name, "input_size": list(size), "training": training.as_dict(args.top),
                          "deploy": deploy.as_dict(args.top)}, indent=2))
        return 0
    table = _markdown if args.format == "markdown" else format_table
    title = f"{name} at {size[0]}x{size[1]}, batch 1, {training.in_chans} channels"
    if already:
        title += " (the checkpoint is in deploy form: both columns are the same model)"
    layer_headers = ["layer", "type", "output", "MAdds (M)", "read (MB)", "written (MB)", "MAdds/byte"]
    sections = [
        (title, table(["", "training", "deploy"], _summary_rows(training, deploy))),
        (f"deploy form: top {args.top} by MAdds", table(layer_headers, _layer_rows(deploy.top(args.top, "madds")))),
        (f"deploy form: top {args.top} by bytes moved",
         table(layer_headers, _layer_rows(deploy.top(args.top, "bytes")))),
    ]
    heading = "### " if args.format == "markdown" else ""
    print("\n\n".join(f"{heading}{head}\n\n{body}" for head, body in sections))
    print("\n" + (NOTE if args.format == "markdown" else textwrap.fill(NOTE, 120)))
    return 0

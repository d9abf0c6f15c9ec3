"""``ghostnets profile NAME|--checkpoint FILE``: MAdds, memory traffic and arithmetic intensity, layer by layer.

The training form and the deploy form (``reparameterize``) side by side, then the deploy form's heaviest layers by
MAdds and by bytes moved: depthwise convs and element-wise ops move about as many bytes as they do MAdds, so they are
memory-bound where the 1x1 convs are not.
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
    p = sub.add_parser("profile", help="per-layer MAdds, bytes moved and arithmetic intensity, training vs deploy form")
    p.add_argument("model", nargs="?", help="registered model name (optional with a ghostnets checkpoint)")
    p.add_argument("--checkpoint", type=Path, help="weights file; ghostnets files record model, classes, input size")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="image size (default: the model's evaluation crop)")
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    p.add_argument("--top", type=int, default=10, metavar="N", help="heaviest layers to list (default 10)")
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

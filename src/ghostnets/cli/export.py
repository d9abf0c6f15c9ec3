"""``ghostnets export``: a model or checkpoint -> a verified ONNX or OpenVINO file of its deploy form."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.samples import real_images
from .options import add_ema_flags, load_model

FORMAT_OF_SUFFIX = {".onnx": "onnx", ".xml": "openvino"}
BACKEND_OF_FORMAT = {"onnx": "onnxruntime", "openvino": "openvino"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the deploy form to ONNX or OpenVINO, verified against PyTorch")
    p.add_argument("model", nargs="?", help="registered model name (optional with a ghostnets --checkpoint)")
    p.add_argument("--checkpoint", type=Path, help="weights to export (any layout create_model reads)")
    p.add_argument("--format", choices=("onnx", "openvino"), help="file format (default: from the --out suffix)")
    p.add_argument("--out", type=Path, required=True, help="file to write (.onnx, or .xml with its .bin)")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="input size the file takes "
                   "(default: the model's eval size)")
    p.add_argument("--dynamic-batch", action="store_true", help="a batch dimension of any size (default: 1)")
    p.add_argument("--calib", type=Path, help="folder of real images for the check and, with --int8, for "
                   "calibration and the agreement measure (default: the bundled Fashion-MNIST test split; with "
                   "--int8 its training split for calibration)")
    p.add_argument("--int8", action="store_true", help="write an INT8 model (post-training static quantization on "
                   "real images), after measuring its top-1 agreement with float32 and its latency")
    p.add_argument("--int8-backend", choices=("auto", "onnxruntime", "openvino"), help="onnxruntime (.onnx) or "
                   "openvino (NNCF, .xml); auto builds both and keeps the faster one that agrees with float32 on 99 %% "
                   "of held-out images, writing --out with its suffix (default: the backend of --format or of the "
                   "--out suffix, else auto)")
    p.add_argument("--min-agreement", type=float, default=99.0, metavar="PCT", help="with --int8: the top-1 "
                   "agreement with float32 on held-out images an int8 model needs, in %% (default: 99)")
    p.add_argument("--int8-weight-bits", type=int, choices=(7, 8), help="with --int8: weights in 7 bits (half the "
                   "int8 range: CPUs without VNNI saturate on full-range weights) or 8 (default: 8 on a CPU with "
                   "VNNI, AMX or Arm's dot product, else 7; quantize with 7 for a CPU without them)")
    p.add_argument("--int8-activations", choices=("asymmetric", "symmetric"), help="with --int8: signed "
                   "activations in their own [lo, hi] with a zero point (default: more accurate, and onnxruntime's "
                   "fast path) or in [-a, a] without one, for targets that require it")
    p.add_argument("--int8-ranges", choices=("histogram", "minmax"), help="with --int8: activation ranges from the "
                   "calibration values' histograms (default: clips rare outliers) or from their minima and maxima")
    p.add_argument("--threads", type=int, help="threads for the int8 latency measure (default: the runtime's)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    add_ema_flags(p)
    p.set_defaults(run=run)


def _int8_backend(args: argparse.Namespace, fmt: str | None) -> str:
    if args.int8_backend in (None, "auto"):
        if args.int8_backend == "auto" and args.format:
            raise ValueError("--int8-backend auto picks the file format itself; drop --format or name a backend")
        return BACKEND_OF_FORMAT[fmt] if fmt and args.int8_backend is None else "auto"
    if fmt and BACKEND_OF_FORMAT[fmt] != args.int8_backend:
        raise ValueError(f"--int8-backend {args.int8_backend} does not write {fmt} files ({args.out.name})")
    return args.int8_backend


def run(args: argparse.Namespace) -> int:
    from ..runtime.export import export_model

    if args.model is None and args.checkpoint is None:
        raise ValueError("name a model (ghostnets export ghostnet_100 ...) or pass --checkpoint FILE")
    fmt = args.format or FORMAT_OF_SUFFIX.get(args.out.suffix)
    if args.int8:
        return run_int8(args, fmt)
    if (args.int8_backend or args.threads is not None or args.int8_weight_bits is not None or args.int8_activations
            or args.int8_ranges):
        raise ValueError("--int8-backend, --int8-weight-bits, --int8-activations, --int8-ranges and --threads go "
                         "with --int8")
    if fmt is None:
        raise ValueError(f"pass --format onnx|openvino or an --out ending in .onnx or .xml (got {args.out.name})")
    if args.out.exists() and not args.force:  # before any work
        raise FileExistsError(f"{args.out} exists; pass --force to replace it")
    model = load_model(args.model, args.checkpoint, args.use_ema)
    report = export_model(model, args.out, format=fmt, real_images=real_images(model.record.input, args.calib),
                          input_size=tuple(args.input_size or ()) or None, dynamic_batch=args.dynamic_batch,
                          overwrite=args.force)
    for name, (diff, scale) in report.checks.items():
        print(f"{name} images: max |Δ logits| vs PyTorch {diff:.3g} (max |logits| {scale:.3g})")
    print(f"wrote {', '.join(str(p) for p in report.files)} ({model.record.name}, deploy form, {fmt})")
    return 0


def run_int8(args: argparse.Namespace, fmt: str | None) -> int:
    """``--int8``: calibrate on real images, quantize, measure against float32, write the kept backend's file."""
    from ..data.samples import calibration_images, held_out_images
    from ..runtime.quantize import quantize_model

    backend = _int8_backend(args, fmt)
    if backend != "auto" and args.out.exists() and not args.force:  # before any work (auto: quantize_model checks)
        raise FileExistsError(f"{args.out} exists; pass --force to replace it")
    if args.threads is not None and args.threads < 1:
        raise ValueError("--threads must be >= 1")
    if not 0 <= args.min_agreement <= 100:
        raise ValueError(f"--min-agreement is a percentage between 0 and 100, got {args.min_agreement}")
    model = load_model(args.model, args.checkpoint, args.use_ema)
    spec = model.record.input
    calib = calibration_images(spec, args.calib)
    held_out = held_out_images(spec, args.calib)
    print(f"calibrating on {len(calib)} images ({args.calib or 'bundled Fashion-MNIST training split'}); "
          f"agreement on {len(held_out)} held-out images ({args.calib or 'bundled test split'})")
    report = quantize_model(model, args.out, calib=calib, held_out=held_out,
                            backend=backend, overwrite=args.force, input_size=tuple(args.input_size or ()) or None,
                            dynamic_batch=args.dynamic_batch, threads=args.threads,
                            min_agreement=args.min_agreement / 100, weight_bits=args.int8_weight_bits,
                            activations=args.int8_activations or "asymmetric", ranges=args.int8_ranges or "histogram")
    for figures in report.candidates.values():
        print(f"  {figures.summary()}")
    print(f"top-1 agreement with float32: {report.agreement:.2%} of {report.held_out} held-out images "
          f"({report.weight_bits}-bit weights, {report.activations} activations, {report.ranges} ranges)")
    print(f"batch-1 latency: float32 {report.float_ms:.2f} ms, int8 {report.int8_ms:.2f} ms "
          f"({report.float_ms / report.int8_ms:.2f}x)")
    print(f"backend: {report.backend}: {report.reason}")
    print(f"kept in float ({len(report.kept_float)} depthwise layers): " + ", ".join(report.kept_float)
          if report.kept_float else "kept in float: none")
    print(f"wrote {', '.join(str(p) for p in report.files)} ({model.record.name}, deploy form, int8)")
    return 0

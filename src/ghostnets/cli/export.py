"""``ghostnets export``: a model or checkpoint -> a verified ONNX or OpenVINO file of its deploy form."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch

from ..data.transforms import InputSpec
from .options import add_ema_flags

REAL_IMAGES = 8


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the deploy form to ONNX or OpenVINO, verified against PyTorch")
    p.add_argument("model", nargs="?", help="registered model name (optional with a ghostnets --checkpoint)")
    p.add_argument("--checkpoint", type=Path, help="weights to export (any layout create_model reads)")
    p.add_argument("--format", required=True, choices=("onnx", "openvino"))
    p.add_argument("--out", type=Path, required=True, help="file to write (.onnx, or .xml with its .bin)")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="input size the file takes "
                   "(default: the model's eval size)")
    p.add_argument("--dynamic-batch", action="store_true", help="a batch dimension of any size (default: 1)")
    p.add_argument("--calib", type=Path, help="folder of real images for the check (default: the bundled "
                   "Fashion-MNIST test split)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    add_ema_flags(p)
    p.set_defaults(run=run)


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (any depth), sorted; a clear error when there are none."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    from ..data.image_folder import DatasetError

    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS and p.is_file())
    if not files:
        raise DatasetError(f"{folder} holds no image files ({', '.join(IMG_EXTENSIONS)})")
    return files


def real_images(spec: InputSpec, folder: Path | None, count: int = REAL_IMAGES) -> torch.Tensor | None:
    """A few held-out real images preprocessed with ``spec``: from ``folder``, else the bundled test split."""
    from PIL import Image

    from ..data.fashion_mnist import DatasetUnavailableError, FashionMNIST
    from ..data.image_folder import CORRUPT_ERRORS

    transform = spec.transform()
    if folder is not None:
        images, skipped = [], 0
        for path in image_files(folder):
            try:
                with Image.open(path) as image:
                    images.append(transform(image))
            except CORRUPT_ERRORS:
                skipped += 1
            if len(images) == count:
                break
        if skipped:
            warnings.warn(f"skipped {skipped} unreadable image file(s) in {folder}", stacklevel=2)
        if not images:
            raise ValueError(f"none of the image files in {folder} could be read")
        return torch.stack(images)
    try:
        test = FashionMNIST("test")
    except DatasetUnavailableError as e:
        warnings.warn(f"no real images for the check ({e}); checked on random inputs only", stacklevel=2)
        return None
    step = max(1, len(test) // count)
    return torch.stack([transform(test[i][0]) for i in range(0, step * count, step)])


def run(args: argparse.Namespace) -> int:
    from ..deploy.export import export_model
    from .predict import load_for_inference

    if args.model is None and args.checkpoint is None:
        raise ValueError("name a model (ghostnets export ghostnet_100 ...) or pass --checkpoint FILE")
    if args.out.exists() and not args.force:  # before any work
        raise FileExistsError(f"{args.out} exists; pass --force to replace it")
    model, class_names, spec = load_for_inference(args)
    report = export_model(model, args.out, format=args.format, spec=spec, class_names=class_names,
                    real_images=real_images(spec, args.calib), input_size=tuple(args.input_size or ()) or None,
                    dynamic_batch=args.dynamic_batch, overwrite=args.force)
    for name, (diff, scale) in report.checks.items():
        print(f"{name} images: max |Δ logits| vs PyTorch {diff:.3g} (max |logits| {scale:.3g})")
    print(f"wrote {', '.join(str(p) for p in report.files)} ({model.model_name}, deploy form, {args.format})")
    return 0

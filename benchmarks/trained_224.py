"""Models trained at 224 px on the bundled Fashion-MNIST: the trained models INT8 agreement is measured on.

No ImageNet weights can be fetched on this machine, and INT8 agreement on random weights proves nothing either way,
so each model is trained from scratch on 600 training images per class of Fashion-MNIST scaled to 224 px RGB
(``bundled_size=224 bundled_channels=3``: the 28x28 image up-sampled to 196 px in a 224 canvas, identical RGB
channels), with the quick recipe at batch 64 (two steps of 32 accumulated: GhostNetV2 at 64 overflowed
24 GiB) for a few epochs, BatchNorm statistics recomputed over 2,048 training
images before each evaluation (precise BN: two epochs leave the running averages behind the weights); the test
split's first 200 images per class are held out. A finished run is reused (delete ``runs/int8-224/NAME`` to
retrain).

    python benchmarks/trained_224.py [--models ghostnet_100,...] [--epochs 2]

Equivalent command per model (what this runs):

    ghostnets train --model NAME --recipe quick --data runs/int8-224/fashion_mnist_600_200_per_class.npz \
        --out runs/int8-224/NAME bundled_size=224 bundled_channels=3 batch_size=64 accum_steps=2 epochs=2 workers=0 \
        precise_bn_images=2048
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ghostnets.data.fashion_mnist import class_subset
from ghostnets.train.config import load_recipe, update_config

from common import ROOT, run_training

MODELS = ("ghostnet_100", "ghostnetv2_100", "repghostnet_100", "mobilenetv3_large_100", "shufflenetv2_x1_0")
RUNS = ROOT / "runs" / "int8-224"
TRAIN_PER_CLASS, TEST_PER_CLASS = 600, 200


def data_file() -> Path:
    """The bundled-format subset the models train and are evaluated on."""
    return class_subset(RUNS, TRAIN_PER_CLASS, TEST_PER_CLASS)


def checkpoint(name: str) -> Path:
    return RUNS / name / "last.safetensors"


def trained(names: str) -> list[str]:
    """The models of the comma-separated ``names`` that have a finished run; the others are named on stderr."""
    found = []
    for name in names.split(","):
        if checkpoint(name).exists():
            found.append(name)
        else:
            print(f"{name}: no trained 224-px model ({checkpoint(name)}); run benchmarks/trained_224.py first",
                  file=sys.stderr)
    return found


def train_at_224(name: str, epochs: int = 2, threads: int = 2) -> dict:
    """Train ``name`` at 224 px (or reuse the finished run) and return its summary."""
    cfg = update_config(load_recipe("quick"), {
        "model": name, "data": str(data_file()), "bundled_size": 224, "bundled_channels": 3, "batch_size": 64,
        "accum_steps": 2, "epochs": epochs, "workers": 0, "threads": threads, "precise_bn_images": 2048}, "trained_224")
    return run_training(cfg, RUNS / name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for name in args.models.split(","):
        summary = train_at_224(name, args.epochs, args.threads)
        print(name, {k: summary.get(k) for k in ("top1", "best_top1", "seconds", "images_per_s") if k in summary},
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

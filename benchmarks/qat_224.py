"""Quantization-aware training on the models trained at 224 px: does int8 reach 99 % top-1 agreement with float32?

Each model of benchmarks/trained_224.py is fine-tuned with ``ghostnets train --qat`` (the ``qat`` recipe: 2 epochs,
the float model as teacher) on the same 600 training images per class; agreement, top-1 and batch-1 latency of
float32 and int8 in ONNX Runtime and OpenVINO are measured by the run itself on the 2,000 held-out test images (none
took part in training or calibration). A finished run is reused, a stopped one resumed (delete
``runs/qat-224/NAME`` to redo it). Writes the ``qat_224`` section of BENCHMARKS.md (``qat_224_vnni`` on a CPU
with int8 dot products: ``common.int8_section``).

    python benchmarks/qat_224.py [--models ghostnet_100,repghostnet_100@4,repghostnet_100+4,...] [--threads 2]
        [--no-write]

Equivalent command per model (what this runs):

    ghostnets train --qat runs/int8-224/NAME/last.safetensors \
        --data runs/int8-224/fashion_mnist_600_200_per_class.npz --out runs/qat-224/NAME workers=0 threads=2 \
        checkpoint_every=20 qat_overflow_fix=FIX [epochs=N] [qat_float_layers=K]

FIX: ``--overflow-fix``; by default ``disable`` (8-bit weights) on a CPU with int8 dot products, else ``enable``.
N: the recipe's (2) unless the model is given as ``NAME@N``; a run of another length has its own folder
(``NAME-8bit-eN``), so ``repghostnet_100,repghostnet_100@4`` measures both. K: 0 (every layer int8) unless the
model is given as ``NAME+K`` (``NAME@N+K`` with both): K quantizers kept in float, chosen before training on the
calibration images (train/qat_float.py), in the folder ``NAME-8bit-fK``.
"""

from __future__ import annotations

import argparse
import json
import sys

import ghostnets
from deploy_latency import int8_batched
from ghostnets.runtime import deploy_form
from ghostnets.runtime.quantize import default_weight_bits
from ghostnets.train import load_recipe, train, update_config
from ghostnets.train.qat import qat_settings
from trained_224 import MODELS, checkpoint, data_file, trained

from common import ROOT, command_line, environment, int8_section, write_section

RUNS = ROOT / "runs" / "qat-224"
RECIPE_EPOCHS = load_recipe("qat").epochs


def default_overflow_fix() -> str:
    """``qat_overflow_fix`` as ``ghostnets export --int8`` chooses weights for this CPU: 8-bit (``disable``) where it
    has int8 dot products, else 7-bit dense weights (``enable``)."""
    return "disable" if default_weight_bits() == 8 else "enable"


def run_folder(name: str, overflow_fix: str, epochs: int = RECIPE_EPOCHS, float_layers: int = 0):
    return RUNS / (name + ("" if overflow_fix == "enable" else "-8bit")
                   + ("" if epochs == RECIPE_EPOCHS else f"-e{epochs}") + (f"-f{float_layers}" if float_layers else ""))


def qat_run(name: str, threads: int, overflow_fix: str, epochs: int = RECIPE_EPOCHS, float_layers: int = 0) -> dict:
    """The QAT run of ``name``: reused when finished, resumed when stopped, else started (one folder per weight
    range, length and float layers: ``NAME`` with 7-bit dense weights, ``NAME-8bit`` with 8-bit ones, ``-eN`` for N
    epochs other than the recipe's, ``-fK`` for K quantizers kept in float)."""
    out = run_folder(name, overflow_fix, epochs, float_layers)
    if (out / "summary.json").exists():
        return json.loads((out / "summary.json").read_text())
    if (out / "checkpoint.pth").exists():
        return _resume(out)
    config = qat_settings(load_recipe("qat"), checkpoint(name))
    config = update_config(config, {"data": str(data_file()), "workers": 0, "threads": threads, "epochs": epochs,
                                    "checkpoint_every": 20, "qat_overflow_fix": overflow_fix,
                                    "qat_float_layers": float_layers}, "qat_224")
    return train(config, out, force=True, progress_bar=False)


def parse_entry(entry: str) -> tuple[str, int, int]:
    """``(name, epochs, float layers)`` of a ``--models`` entry: ``NAME``, ``NAME@EPOCHS``, ``NAME+K`` or
    ``NAME@EPOCHS+K``."""
    rest, _, float_layers = entry.partition("+")
    name, _, epochs = rest.partition("@")
    for part, what, example in ((epochs, "after @ must be a number of epochs", "@4"),
                                (float_layers, "after + must be a number of quantizers to keep in float", "+4")):
        if part and not part.isdigit():
            raise SystemExit(f"--models entry {entry!r}: the part {what}, e.g. {name}{example}")
    return name, int(epochs) if epochs else RECIPE_EPOCHS, int(float_layers or 0)


def _resume(out) -> dict:
    from ghostnets.train import TrainConfig
    from ghostnets.train.state import load_state

    config = TrainConfig(**load_state(out / "checkpoint.pth")["config"])
    return train(config, out, resume=True, progress_bar=False)


def batched(name: str, out, batch: int, threads: int) -> str:
    """Batch ``batch`` throughput of the run's int8 file in OpenVINO against the faster float32 runtime."""
    float_model = deploy_form(ghostnets.create_model(None, checkpoint_path=checkpoint(name)))
    return int8_batched(out / "last_int8.onnx", float_model, batch=batch, runs=10 * batch, threads=threads)


def table(summaries: dict[str, dict], batch: dict[str, str], size: int) -> str:
    rows = ["| model | epochs | kept in float | float32 top-1 | agreement before QAT (PTQ ranges, PyTorch) | runtime | "
            "int8 top-1 | agreement with float32 | float32 ms | int8 ms | int8 / same runtime's float32 | "
            f"int8 / faster float32 | batch {size} (OpenVINO's int8): float32 ms, int8 ms, int8 / faster float32 |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for entry, s in summaries.items():
        name = s["model"]
        f = s["int8"]
        before = s.get("before_qat") or {}
        kept = ", ".join(s.get("kept_in_float") or []) or "none"
        for runtime in ("onnxruntime", "openvino"):
            if runtime not in f:
                continue
            r = f[runtime]
            rows.append(f"| {name} | {s['epochs']} | {kept} | {f['float32_top1']:.2f} % | "
                        f"{before.get('agreement', float('nan')):.2f} % | "
                        f"{runtime} | {r['int8_top1']:.2f} % | **{r['agreement']:.2f} %** | {r['float32_ms']:.2f} | "
                        f"{r['int8_ms']:.2f} | {r['int8_over_float32']:.2f}x | {r['int8_over_best_float32']:.2f}x | "
                        f"{batch.get(entry, '—') if runtime == 'openvino' else '—'} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS[:3]))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--overflow-fix", choices=("enable", "disable"), help="qat_overflow_fix: enable (7-bit dense "
                        "weights) or disable (8-bit); default: by this CPU, as ghostnets export --int8 chooses")
    parser.add_argument("--batch", type=int, default=32, help="batch size of the throughput column (0: none)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    fix = args.overflow_fix or default_overflow_fix()
    summaries, batch = {}, {}
    for entry in args.models.split(","):
        name, epochs, float_layers = parse_entry(entry)
        if not trained(name):
            continue
        summaries[entry] = qat_run(name, args.threads, fix, epochs, float_layers)
        print(entry, json.dumps(summaries[entry]["int8"]), flush=True)
        if args.batch:
            batch[entry] = batched(name, run_folder(name, fix, epochs, float_layers), args.batch, args.threads)
            print(entry, f"batch {args.batch}:", batch[entry], flush=True)
    body = ("## Quantization-aware training at 224 px (`ghostnets train --qat`)\n\n"
            f"Machine: {environment(args.threads)}.\n\nRegenerate: `{command_line()}`\n\n"
            f"Weights: qat_overflow_fix={fix} ({'7-bit dense' if fix == 'enable' else '8-bit'} weights).\n\n"
            "Held-out: the 2,000 test images of runs/int8-224's subset (none used in training or calibration). "
            "Latency: batch 1, median of 36 interleaved runs of all four files in one process, after training; "
            f"batch {args.batch}: the int8 file in OpenVINO against the float32 deploy form in both runtimes, "
            "interleaved.\n\n"
            + table(summaries, batch, args.batch))
    print(body)
    if not args.no_write:
        write_section(int8_section("qat_224"), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

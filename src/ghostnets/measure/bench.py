"""Latency tables: models timed through every runtime, beside MAdds, the machine's lower bound and top-1.

The library behind ``ghostnets bench`` (which parses arguments and prints): what to time (registered names,
patterns, torchvision baselines, a checkpoint), the rows of one model, their top-1 through each runtime, and the
markdown / CSV / JSON outputs.
"""

from __future__ import annotations

import csv
import difflib
import fnmatch
import gc
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..atomic import atomic_write
from ..counting import count_madds, count_params
from ..data.samples import calibration_images, held_out_images
from ..errors import UnknownModelError
from ..factory import create_model
from ..record import in_chans_of, model_name, record_of
from ..registry import TORCHVISION_ALIAS, TORCHVISION_PREFIX, list_models, model_info
from ..runtime import RuntimeContext, deploy_form, summarize, time_interleaved
from ..train.distributed import Distributed
from ..train.loaders import evaluation_data
from .machine import FLOOR, activation_bytes, bytes_moved
from .memory import PeakMemory

COLUMNS = ["model", "runtime", "batch", "median_ms", "p90_ms", "images_per_s", "peak_mb", "memory", "madds",
           "params", "bytes_moved", "bound_bytes", "bound_ms", "top1", "measured_top1", "max_rel_diff", "threads",
           "input_size", "note", "error"]
CALIB_IMAGES = 64  # int8 calibration and held-out images each
ACCURACY_BATCH = 64  # images per call when --accuracy runs the held-out split through a runtime


BASELINE_PREFIX = TORCHVISION_ALIAS  # torchvision baselines, as ``ghostnets bench`` names them
# ImageNet-1k acc@1 of torchvision's IMAGENET1K_V1 weights (torchvision.models.*_Weights.IMAGENET1K_V1.meta)
BASELINES: dict[str, float] = {
    "mobilenet_v2": 71.878, "mobilenet_v3_large": 74.042, "mobilenet_v3_small": 67.668,
    "shufflenet_v2_x0_5": 60.552, "shufflenet_v2_x1_0": 69.362, "shufflenet_v2_x1_5": 72.996,
    "shufflenet_v2_x2_0": 76.230,
}


@dataclass
class BenchSettings:
    """How to time: batch sizes, threads, input size (None: the model's), runs, warm-up, int8 calibration folder,
    and the held-out data to measure top-1 on (None: no accuracy; "bundled": the bundled test split)."""

    batch: list[int]
    threads: int
    input_size: tuple[int, int] | None = None
    runs: int = 50
    warmup: int = 10
    calib: Path | None = None
    accuracy: str | None = None


@dataclass
class Entry:
    """A model to time: its display name, deploy form, input description and card top-1."""

    name: str
    model: object
    spec: object
    top1: float | None
    class_names: list[str] | None = None


def resolve_names(patterns: list[str]) -> list[str]:
    """Registered names / patterns and ``tv:`` baselines -> the names to time, in order, without repeats.

    A bare pattern matches registered names; ``tv:PATTERN`` matches the torchvision baselines; a bare exact name that
    is only a baseline resolves to it (an error if it is both).
    """
    registered, names = list_models(), []
    for pattern in patterns:
        if pattern.startswith(BASELINE_PREFIX):
            found = [BASELINE_PREFIX + n for n in BASELINES if fnmatch.fnmatchcase(n, pattern[len(BASELINE_PREFIX):])]
        elif pattern in BASELINES:
            if pattern in registered:
                raise UnknownModelError(f"{pattern!r} is both a ghostnets model and a torchvision baseline: write "
                                        f"{BASELINE_PREFIX}{pattern} for torchvision's")
            found = [BASELINE_PREFIX + pattern]
        else:
            found = list_models(pattern)
        if not found:
            choices = registered + [BASELINE_PREFIX + n for n in BASELINES]
            close = difflib.get_close_matches(pattern, choices, n=4, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise UnknownModelError(f"no model matches {pattern!r}.{hint} `ghostnets list` shows the registered "
                                    f"names; baselines: {', '.join(BASELINE_PREFIX + n for n in BASELINES)}")
        names += [n for n in found if n not in names]
    return names


def entries_for(names: list[str], checkpoint: Path | None = None, use_ema: bool | None = None) -> list[Entry]:
    """What to time: the model a ``checkpoint`` holds (``names``: at most its model's name), or every model the
    names and patterns resolve to, each in deploy form."""
    if checkpoint is not None:
        if len(names) > 1:
            raise ValueError("--checkpoint times one model: name at most one")
        model = create_model(names[0] if names else None, checkpoint_path=checkpoint, use_ema=use_ema)
        record = record_of(model)
        top1 = model_info(record.name).top1 if record.name in list_models() else None
        return [Entry(_display_name(record.name), deploy_form(model), record.input, top1, record.class_names)]
    if not names:
        raise ValueError("name the models to time (ghostnets bench ghostnet_100 tv:mobilenet_v3_large ...)")
    entries = []
    for name in resolve_names(names):
        model = create_model(name)
        top1 = BASELINES[name[len(BASELINE_PREFIX):]] if name.startswith(BASELINE_PREFIX) else model_info(name).top1
        entries.append(Entry(name, deploy_form(model), record_of(model).input, top1))
    return entries


def _display_name(name: str) -> str:
    return BASELINE_PREFIX + name.removeprefix(TORCHVISION_PREFIX) if name.startswith(TORCHVISION_PREFIX) else name


def _calibration(entry: Entry, calib: Path | None):
    """Calibration and held-out images for int8: from ``calib``, else the bundled set."""
    return calibration_images(entry.spec, calib, CALIB_IMAGES), held_out_images(entry.spec, calib, CALIB_IMAGES)


def _fmt(value, spec: str, missing: str = "–") -> str:
    return missing if value is None or value == "" else format(value, spec)


def markdown_table(rows: list[dict]) -> str:
    lines = ["| model | runtime | batch | median ms | p90 ms | img/s | peak MB | MAdds | bound ms | card top-1 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['model']} | {r['runtime']} | {r['batch']} | failed: {r['error']} | | | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['runtime']} | {r['batch']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | "
                     f"{r['images_per_s']:.1f} | {_fmt(r['peak_mb'], '.1f')} | {r['madds'] / 1e6:.1f}M | "
                     f"{r['bound_ms']:.3f} | {_fmt(r['top1'], '.1f')} |")
    return "\n".join(lines)


def write_outputs(rows: list[dict], out: Path, force: bool) -> None:
    """The rows as CSV at ``out`` and JSON beside it, written atomically."""
    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS} for r in rows)

    atomic_write(out, write_csv, overwrite=force)
    atomic_write(out.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(rows, indent=1) + "\n"),
                 overwrite=force)


def plot_files(plot_dir: Path, runtimes: list[str]) -> list[Path]:
    return [plot_dir / f"{kind}_{rt}.png" for rt in runtimes for kind in ("latency_vs_madds", "accuracy_vs_latency")]


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__


def bench_entry(entry: Entry, runtimes: list, settings: BenchSettings, limits, workdir: Path, bar,
                sources: set[str]) -> list[dict]:
    """The rows of one model: prepare each runtime once, then per batch size load each (memory measured over the
    load and warm-up), check its output against eager PyTorch and time them all, taking turns."""
    model = entry.model
    in_chans = in_chans_of(model)
    size = tuple(settings.input_size) if settings.input_size else (entry.spec.size, entry.spec.size)
    ctx = RuntimeContext(workdir, threads=settings.threads)
    common = {"model": entry.name, "madds": count_madds(model, size, in_chans), "params": count_params(model),
              "top1": entry.top1, "threads": settings.threads, "input_size": f"{size[0]}x{size[1]}"}
    prepared, failed = {}, {}
    for runtime in runtimes:
        bar.set_postfix_str(f"{entry.name} {runtime.name}: preparing")
        try:
            if runtime.name == "int8":
                ctx.calib, ctx.held_out = _calibration(entry, settings.calib)
            prepared[runtime.name] = runtime.prepare(model, size, ctx)
        except Exception as e:  # one runtime failing on one model does not stop the others
            failed[runtime.name] = _error(e)
    rows = []
    for batch in settings.batch:
        x = torch.randn(batch, in_chans, *size, generator=torch.Generator().manual_seed(batch)).numpy()
        moved, source = bytes_moved(model, size, in_chans, batch)
        floor = moved if source == FLOOR else activation_bytes(model, size, in_chans, batch)
        sources.add(source)
        base = {**common, "batch": batch, "bytes_moved": moved, "bound_bytes": floor,
                "bound_ms": limits.bound_ms(common["madds"] * batch, floor)}
        fns, memory, outputs, errors = {}, {}, {}, dict(failed)
        for runtime in runtimes:
            if runtime.name in errors:
                continue
            bar.set_postfix_str(f"{entry.name} {runtime.name} batch {batch}: loading, warm-up")
            try:
                with PeakMemory() as mem:
                    fn = runtime.load(prepared[runtime.name], (batch, in_chans, *size), settings.threads)
                    out = fn(x)
                    for _ in range(settings.warmup):
                        fn(x)
            except Exception as e:
                errors[runtime.name] = _error(e)
                continue
            fns[runtime.name], memory[runtime.name], outputs[runtime.name] = fn, mem, out
        with torch.inference_mode():  # after the loads: its activations would hide eager's in peak MB
            reference = model(torch.from_numpy(x)).numpy()
        bar.set_postfix_str(f"{entry.name} batch {batch}: timing {', '.join(fns)}")
        times = time_interleaved({k: (lambda fn=fn, x=x: fn(x)) for k, fn in fns.items()}, settings.runs) \
            if fns else {}
        accuracy = {}
        if settings.accuracy and batch == settings.batch[0]:
            bar.set_postfix_str(f"{entry.name}: top-1 through {', '.join(fns)}")
            shape = (ACCURACY_BATCH, in_chans, *size)  # its own load: batch-1 callables would take minutes
            accuracy = {rt.name: held_out_top1(rt.load(prepared[rt.name], shape, settings.threads), ACCURACY_BATCH,
                                               size, entry.spec, settings.accuracy)
                        for rt in runtimes if rt.name in fns}
        for runtime in runtimes:
            note = ctx.notes.get(model_name(model)) if runtime.name == "int8" else None
            row = {**base, "runtime": runtime.name, "note": note}
            if runtime.name in errors:
                row["error"] = errors[runtime.name]
                tqdm.write(f"ghostnets: warning: {entry.name} on {runtime.name}, batch {batch}: {row['error']}",
                           file=sys.stderr)
            else:
                out = outputs[runtime.name]
                row.update(summarize(times[runtime.name], batch), peak_mb=memory[runtime.name].mb,
                           measured_top1=accuracy.get(runtime.name),
                           memory=memory[runtime.name].kind,
                           max_rel_diff=float(np.abs(out - reference).max() / max(1.0, np.abs(reference).max())))
            rows.append({k: row.get(k) for k in COLUMNS})
        bar.update(len(runtimes))
        del fns, memory, outputs
        gc.collect()
    if any(r.name in ("compile", "cuda-compile") for r in runtimes):
        torch._dynamo.reset()  # this model's compiled code is not needed again
    return rows


def held_out_top1(fn, batch: int, size: tuple[int, int], spec, data: str) -> float:
    """Top-1 (%) of a runtime callable that takes ``batch`` images at a time, over a held-out split (the last chunk
    is padded with zeros and its padding ignored)."""
    batches, _ = evaluation_data(None if data == "bundled" else data, spec, 256, 0, Distributed())
    correct = total = 0
    for images, targets, _ in batches:
        if images is None:
            continue
        if tuple(images.shape[-2:]) != tuple(size):
            images = torch.nn.functional.interpolate(images, size=size, mode="bilinear", align_corners=False)
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch].numpy()
            n = len(chunk)
            if n < batch:
                chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), chunk.dtype)])
            predicted = np.asarray(fn(np.ascontiguousarray(chunk, dtype=np.float32)))[:n].argmax(1)
            correct += int((predicted == targets[start:start + n].numpy()).sum())
            total += n
    return 100.0 * correct / max(total, 1)


def deploy_summary(rows: list[dict]) -> str:
    """Per model, three rows: PyTorch eager, the best float32 runtime, INT8 (batch of the first rows)."""
    lines = ["| model | deploy path | median ms | top-1 measured |", "|---|---|---:|---:|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        ok = [r for r in rows if r["model"] == model and not r.get("error") and r["batch"] == rows[0]["batch"]]
        floats = [r for r in ok if r["runtime"] not in ("eager", "int8")]
        picks = [("PyTorch eager", [r for r in ok if r["runtime"] == "eager"]),
                 ("best float32", sorted(floats, key=lambda r: r["median_ms"])[:1]),
                 ("INT8", [r for r in ok if r["runtime"] == "int8"])]
        for label, found in picks:
            if found:
                r = found[0]
                shown = label if label != "best float32" else f"best float32 ({r['runtime']})"
                lines.append(f"| {model} | {shown} | {r['median_ms']:.2f} | {_fmt(r.get('measured_top1'), '.2f')} |")
    return "\n".join(lines)

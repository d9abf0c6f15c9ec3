"""``ghostnets bench``: measured latency and throughput of models on several runtimes, beside MAdds, the machine's
lower bound and the card's top-1; CSV/JSON and Pareto plots."""

from __future__ import annotations

import argparse
import csv
import difflib
import fnmatch
import gc
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .options import add_ema_flags

COLUMNS = ["model", "runtime", "batch", "median_ms", "p90_ms", "images_per_s", "peak_mb", "memory", "madds",
           "params", "bytes_moved", "bound_bytes", "bound_ms", "top1", "measured_top1", "max_rel_diff", "threads",
           "input_size", "note", "error"]
CALIB_IMAGES = 64  # int8 calibration and held-out images each
ACCURACY_BATCH = 64  # images per call when --accuracy runs the held-out split through a runtime


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="latency/throughput per runtime, machine bound, Pareto plots")
    p.add_argument("models", nargs="*", metavar="NAME", help="registered names or patterns ('ghostnet_*'), "
                   "torchvision baselines as tv:NAME (tv:mobilenet_v2, 'tv:shufflenet*')")
    p.add_argument("--checkpoint", type=Path, help="time the model a checkpoint holds (at most one NAME)")
    p.add_argument("--runtimes", default="eager", help="comma-separated: eager, compile, onnxruntime, openvino, "
                   "int8 (default: eager)")
    p.add_argument("--batch", type=_int_list, default=[1], help="comma-separated batch sizes (default: 1)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count(), help="threads of every runtime (default: the cores this process may use)")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="default: the model's eval size")
    p.add_argument("--runs", type=int, default=50, help="timed runs of each runtime (default: 50)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs of each runtime first (default: 10)")
    p.add_argument("--out", type=Path, help="write the rows to this CSV file (and a .json beside it)")
    p.add_argument("--plot", type=Path, metavar="DIR", help="write latency/accuracy Pareto plots (PNG) here")
    p.add_argument("--calib", type=Path, help="folder of images to calibrate int8 with (default: the bundled set)")
    p.add_argument("--accuracy", nargs="?", const="bundled", metavar="DATA", help="also measure top-1 through every "
                   "runtime on held-out images: DATA is an ImageFolder root (DIR/val) or a .npz; no DATA: the bundled "
                   "Fashion-MNIST test split (for models trained on it)")
    p.add_argument("--force", action="store_true", help="replace existing --out / --plot files")
    add_ema_flags(p)
    p.set_defaults(run=run)


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
    from ..errors import UnknownModelError
    from ..profile.latency import BASELINE_PREFIX, BASELINES
    from ..registry import list_models

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


def _entries(args: argparse.Namespace) -> list[Entry]:
    from ..data.transforms import InputSpec
    from ..factory import create_model
    from ..profile.latency import BASELINES, build_baseline, deploy_form
    from ..registry import list_models, model_info

    if args.checkpoint is not None:
        from .predict import load_for_inference

        if len(args.models) > 1:
            raise ValueError("--checkpoint times one model: name at most one")
        ns = argparse.Namespace(model=args.models[0] if args.models else None, checkpoint=args.checkpoint,
                                use_ema=args.use_ema)
        model, class_names, spec = load_for_inference(ns)
        top1 = model_info(model.model_name).top1 if model.model_name in list_models() else None
        return [Entry(model.model_name, deploy_form(model), spec, top1, class_names)]
    if not args.models:
        raise ValueError("name the models to time (ghostnets bench ghostnet_100 tv:mobilenet_v3_large ...)")
    entries = []
    for name in resolve_names(args.models):
        if name.startswith("tv:"):
            spec = InputSpec(interpolation="bilinear")  # torchvision's ImageNet eval: 224 from 256, bilinear
            entries.append(Entry(name, deploy_form(build_baseline(name)), spec, BASELINES[name[3:]]))
        else:
            card = model_info(name)
            t = card.eval_transform
            spec = InputSpec.from_crop_pct(t.input_size[-1], t.crop_pct, t.interpolation, t.mean, t.std)
            entries.append(Entry(name, deploy_form(create_model(name)), spec, card.top1))
    return entries


def _calibration(entry: Entry, args: argparse.Namespace):
    """Calibration and held-out images for int8: from ``--calib``, else the bundled set (the quantizer's loaders)."""
    from ..deploy.quantize import calibration_images, held_out_images

    return calibration_images(entry.spec, args.calib, CALIB_IMAGES), held_out_images(entry.spec, args.calib,
                                                                                     CALIB_IMAGES)


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


def _write_outputs(rows: list[dict], out: Path, force: bool) -> None:
    from ..atomic import atomic_write

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS} for r in rows)

    atomic_write(out, write_csv, overwrite=force)
    atomic_write(out.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(rows, indent=1) + "\n"),
                 overwrite=force)


def _plot_files(plot_dir: Path, runtimes: list[str]) -> list[Path]:
    return [plot_dir / f"{kind}_{rt}.png" for rt in runtimes for kind in ("latency_vs_madds", "accuracy_vs_latency")]


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__


def _bench_entry(entry: Entry, runtimes: list, args: argparse.Namespace, limits, workdir: Path, bar,
                 sources: set[str]) -> list[dict]:
    """The rows of one model: prepare each runtime once, then per batch size load each (memory measured over the
    load and warm-up), check its output against eager PyTorch and time them all, taking turns."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from ..profile.counting import count_madds, count_params
    from ..profile.latency import PeakMemory, RuntimeContext, summarize, time_interleaved
    from ..profile.machine import FLOOR, activation_bytes, bytes_moved

    model = entry.model
    in_chans = getattr(model, "in_chans", entry.spec.channels)
    size = tuple(args.input_size) if args.input_size else (entry.spec.size, entry.spec.size)
    ctx = RuntimeContext(workdir, entry.spec, entry.class_names, threads=args.threads)
    common = {"model": entry.name, "madds": count_madds(model, size, in_chans), "params": count_params(model),
              "top1": entry.top1, "threads": args.threads, "input_size": f"{size[0]}x{size[1]}"}
    prepared, failed = {}, {}
    for runtime in runtimes:
        bar.set_postfix_str(f"{entry.name} {runtime.name}: preparing")
        try:
            if runtime.name == "int8":
                ctx.calib, ctx.held_out = _calibration(entry, args)
            prepared[runtime.name] = runtime.prepare(model, size, ctx)
        except Exception as e:  # one runtime failing on one model does not stop the others
            failed[runtime.name] = _error(e)
    rows = []
    for batch in args.batch:
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
                    fn = runtime.load(prepared[runtime.name], (batch, in_chans, *size), args.threads)
                    out = fn(x)
                    for _ in range(args.warmup):
                        fn(x)
            except Exception as e:
                errors[runtime.name] = _error(e)
                continue
            fns[runtime.name], memory[runtime.name], outputs[runtime.name] = fn, mem, out
        with torch.inference_mode():  # after the loads: its activations would hide eager's in peak MB
            reference = model(torch.from_numpy(x)).numpy()
        bar.set_postfix_str(f"{entry.name} batch {batch}: timing {', '.join(fns)}")
        times = time_interleaved(fns, x, args.runs) if fns else {}
        accuracy = {}
        if args.accuracy and batch == args.batch[0]:
            bar.set_postfix_str(f"{entry.name}: top-1 through {', '.join(fns)}")
            shape = (ACCURACY_BATCH, in_chans, *size)  # its own load: batch-1 callables would take minutes
            accuracy = {rt.name: held_out_top1(rt.load(prepared[rt.name], shape, args.threads), ACCURACY_BATCH, size,
                                               entry.spec, args.accuracy) for rt in runtimes if rt.name in fns}
        for runtime in runtimes:
            note = ctx.notes.get(entry.name) if runtime.name == "int8" else None
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
    if any(r.name == "compile" for r in runtimes):
        torch._dynamo.reset()  # this model's compiled code is not needed again
    return rows


def held_out_top1(fn, batch: int, size: tuple[int, int], spec, data: str) -> float:
    """Top-1 (%) of a runtime callable that takes ``batch`` images at a time, over a held-out split (the last chunk
    is padded with zeros and its padding ignored)."""
    import numpy as np
    import torch

    from ..train.distributed import Distributed
    from ..train.loaders import evaluation_data

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


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..profile.latency import check_runtimes
    from ..profile.machine import FLOOR, MachineLimits
    from ..profile.pareto import plot_results

    runtimes = check_runtimes([r.strip() for r in args.runtimes.split(",") if r.strip()])
    if args.threads < 1 or args.runs < 1 or args.warmup < 0:
        raise ValueError("--threads and --runs must be >= 1, --warmup >= 0")
    if not args.force:  # refuse before any work
        existing = ([args.out, args.out.with_suffix(".json")] if args.out is not None else []) + \
            (_plot_files(args.plot, [r.name for r in runtimes]) if args.plot is not None else [])
        for path in existing:
            if path.exists():
                raise FileExistsError(f"{path} exists; pass --force to replace it")
    torch.set_num_threads(args.threads)
    entries = _entries(args)
    limits = MachineLimits.measure(args.threads)
    rows: list[dict] = []
    sources: set[str] = set()
    bar = tqdm(total=len(entries) * len(runtimes) * len(args.batch), desc="bench", unit="run", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="ghostnets-bench-") as workdir:
        for entry in entries:
            rows += _bench_entry(entry, runtimes, args, limits, Path(workdir), bar, sources)
    bar.close()
    print(markdown_table(rows))
    print()
    if args.accuracy:
        print(deploy_summary(rows))
        print()
    kinds = {r["memory"] for r in rows if r.get("memory")}
    print(f"machine: {limits.describe()}; {args.warmup} warm-up runs, then {args.runs} timed runs, the runtimes taking "
          "turns in blocks of 10; median and p90 per batch. A shared machine's load shows in the figures.")
    print("peak MB: rise of the process's resident memory while the runtime loads and warms up ("
          + (" / ".join(sorted(kinds)) or "n/a") + "; exports and quantization excluded).")
    print("bound ms: max(2 MAdds / peak FLOP/s, bytes / copy bandwidth), bytes = " + FLOOR + " (the least a fused "
          "executor moves if activations go through memory; where they stay in the caches a runtime can beat it). "
          "CSV bytes_moved: " + " / ".join(sorted(sources)) + ".")
    if args.out is not None:
        _write_outputs(rows, args.out, args.force)
        print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    if args.plot is not None:
        written = plot_results(rows, args.plot, overwrite=args.force)
        print(f"wrote {len(written)} plot(s) to {args.plot}")
    return 1 if any(r.get("error") for r in rows) else 0

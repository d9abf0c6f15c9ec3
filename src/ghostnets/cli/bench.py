"""``ghostnets bench``: measured latency and throughput of models on several runtimes, beside MAdds, the machine's
lower bound and the card's top-1; CSV/JSON and Pareto plots."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from .options import add_ema_flags


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
    p.add_argument("--runtimes", default="eager", help="comma-separated: eager, compile, compile-max, "
                   "export-onnxruntime, export-openvino, onnxruntime, openvino, int8, cuda, cuda-compile (the last "
                   "two on a CUDA GPU; default: eager)")
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


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..measure.bench import (
        BenchSettings,
        bench_entry,
        deploy_summary,
        entries_for,
        markdown_table,
        plot_files,
        write_outputs,
    )
    from ..measure.machine import FLOOR, MachineLimits
    from ..measure.pareto import plot_results
    from ..runtime import check_runtimes

    runtimes = check_runtimes([r.strip() for r in args.runtimes.split(",") if r.strip()])
    if args.threads < 1 or args.runs < 1 or args.warmup < 0:
        raise ValueError("--threads and --runs must be >= 1, --warmup >= 0")
    if not args.force:  # refuse before any work
        existing = ([args.out, args.out.with_suffix(".json")] if args.out is not None else []) + \
            (plot_files(args.plot, [r.name for r in runtimes]) if args.plot is not None else [])
        for path in existing:
            if path.exists():
                raise FileExistsError(f"{path} exists; pass --force to replace it")
    torch.set_num_threads(args.threads)
    entries = entries_for(args.models, args.checkpoint, args.use_ema)
    settings = BenchSettings(args.batch, args.threads, tuple(args.input_size) if args.input_size else None,
                             args.runs, args.warmup, args.calib, args.accuracy)
    limits = MachineLimits.measure(args.threads)
    rows: list[dict] = []
    sources: set[str] = set()
    bar = tqdm(total=len(entries) * len(runtimes) * len(args.batch), desc="bench", unit="run", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="ghostnets-bench-") as workdir:
        for entry in entries:
            rows += bench_entry(entry, runtimes, settings, limits, Path(workdir), bar, sources)
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
        write_outputs(rows, args.out, args.force)
        print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    if args.plot is not None:
        written = plot_results(rows, args.plot, overwrite=args.force)
        print(f"wrote {len(written)} plot(s) to {args.plot}")
    return 1 if any(r.get("error") for r in rows) else 0

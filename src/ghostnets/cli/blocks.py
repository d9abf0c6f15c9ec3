"""``ghostnets blocks``: the registered building blocks, and the hardware-aware block evaluation over them
(``list``, ``sweep``, ``measure``, ``report``; the library is :mod:`ghostnets.blocks_eval`)."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from ..layers.block_registry import SHARED_KEYWORDS, block_info, list_blocks
from ..table import format_table

DEFAULT_STORAGE = "sqlite:///runs/blocks.db"


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("blocks", help="the building blocks, and their hardware-aware evaluation",
                       description="Every registered block, built as create_block(NAME, in_chs, out_chs, stride, "
                                   f"*, {', '.join(SHARED_KEYWORDS)}); and the block evaluation: sample networks "
                                   "of each block from a design space, proxy-train them (sweep), time them on each "
                                   "target (measure), compare Pareto fronts (report).")
    p.set_defaults(run=run_list)
    actions = p.add_subparsers(dest="blocks_command", metavar="{list,sweep,measure,report}")
    actions.add_parser("list", help="every registered block type, its paper, the keywords it takes").set_defaults(
        run=run_list)

    def study_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--storage", default=DEFAULT_STORAGE,
                       help=f"the Optuna study's database URL (default {DEFAULT_STORAGE}; postgresql://USER@HOST/DB "
                            "for workers on many machines)")
        q.add_argument("--study", required=True, help="the study's name")

    s = actions.add_parser("sweep", help="sample networks of each block and proxy-train them (resumable, "
                                         "many workers may share one study)")
    study_args(s)
    s.add_argument("--blocks", required=True, type=_split, help="comma-separated block names")
    s.add_argument("--samples", type=int, default=12, help="networks per block (default 12)")
    s.add_argument("--madds", default="4M:16M", help="the MAdds band LOW:HIGH at the space's input size")
    s.add_argument("--epochs", type=int, default=3, help="proxy-training epochs (default 3)")
    s.add_argument("--space", type=Path, help="a design space YAML (fields of DesignSpace); default: the built-in")
    s.add_argument("--data", help="ImageFolder DIR or bundled-format .npz (default: the bundled Fashion-MNIST)")
    s.add_argument("--train-per-class", type=int, help="train on the first N images of each class")
    s.add_argument("--eval-per-class", type=int, help="evaluate on the first N held-out images of each class")
    s.add_argument("--sampler", choices=("random", "nsga2"), default="random",
                   help="random: the paper's distribution estimate; nsga2: each block's best networks, top-1 vs "
                        "--objective latency")
    s.add_argument("--objective", default="eager:1", help="nsga2's latency objective RUNTIME:BATCH (this machine)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--recipe", default="blockeval", help="the training recipe (bundled name or YAML)")
    s.add_argument("--workdir", type=Path, help="where trial runs go (default: beside a SQLite file, "
                                                "runs/blocks/STUDY otherwise)")
    s.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    s.add_argument("--threads", type=int, default=0, help="torch threads per worker (default: cores / workers)")
    s.add_argument("--device", default="auto")
    s.add_argument("--heartbeat", type=int, default=30,
                   help="seconds between a worker's heartbeats; a trial silent for 3x this is retried")
    s.add_argument("--max-trials", type=int, help="this worker stops after N trials")
    s.set_defaults(run=run_sweep)

    m = actions.add_parser("measure", help="time every network of a study on this machine, per runtime")
    study_args(m)
    m.add_argument("--target", default="this-cpu", help="the device's name, a column of the report")
    m.add_argument("--runtimes", type=_split, default=["eager"],
                   help="eager, compile, onnxruntime, openvino, int8, cuda, cuda-compile")
    m.add_argument("--batch", type=lambda t: [int(b) for b in _split(t)], default=[1], help="batch sizes, e.g. 1,8")
    m.add_argument("--threads", type=int, default=1, help="threads of every runtime (default 1)")
    m.add_argument("--runs", type=int, default=50, help="timed calls per runtime and batch")
    m.add_argument("--warmup", type=int, default=10)
    m.add_argument("--calib", type=Path, help="int8 calibration images (a folder; default: the bundled set)")
    m.add_argument("--force", action="store_true", help="measure again what is already recorded")
    m.set_defaults(run=run_measure)

    r = actions.add_parser("report", help="Pareto fronts, EDFs, bootstrap intervals, speedups: report.md + PNG/CSV")
    study_args(r)
    r.add_argument("--out", type=Path, required=True, help="the report's folder")
    r.set_defaults(run=run_report)


def run_list(args: argparse.Namespace) -> int:
    rows = []
    for name in list_blocks():
        spec = block_info(name)
        rows.append([name, ", ".join(k for k in SHARED_KEYWORDS if k in spec.honours), spec.paper,
                     spec.arxiv, spec.summary])
    print(format_table(["block", "honours", "paper", "arXiv", "what it is"], rows, text_columns=5))
    return 0


def _quiet_optuna() -> None:
    try:
        from optuna.exceptions import ExperimentalWarning
    except ImportError:
        return
    warnings.filterwarnings("ignore", category=ExperimentalWarning)


def _workdir(args: argparse.Namespace) -> Path:
    if args.workdir is not None:
        return args.workdir
    if args.storage.startswith("sqlite:///"):
        return Path(args.storage.removeprefix("sqlite:///")).parent / f"{args.study}-trials"
    return Path("runs") / "blocks" / args.study


def _worker(args: argparse.Namespace, settings, threads: int) -> dict:
    from ..blocks_eval.nsga2 import run_nsga2
    from ..blocks_eval.study import open_storage
    from ..blocks_eval.sweep import WorkerOptions, run_sweep

    _quiet_optuna()
    storage = open_storage(args.storage, heartbeat_s=args.heartbeat)
    options = WorkerOptions(_workdir(args), threads=threads, device=args.device, max_trials=args.max_trials,
                            poll_s=min(5.0, args.heartbeat), progress_bar=sys.stderr.isatty() or args.workers == 1)
    return (run_nsga2 if args.sampler == "nsga2" else run_sweep)(storage, args.study, settings, options)


def run_sweep(args: argparse.Namespace) -> int:
    from ..blocks_eval.space import DesignSpace, check_band, parse_band
    from ..blocks_eval.study import SweepSettings, create_or_load, open_storage
    from ..blocks_eval.sweep import check_blocks, fit_space_to_data, plan

    _quiet_optuna()
    if args.samples < 1 or args.epochs < 1 or args.workers < 1:
        raise ValueError("--samples, --epochs and --workers must be >= 1")
    blocks = check_blocks(args.blocks)
    space = fit_space_to_data(DesignSpace.from_yaml(args.space) if args.space else DesignSpace(), args.data)
    settings = SweepSettings(space=space, blocks=tuple(blocks), samples=args.samples, band=parse_band(args.madds),
                             seed=args.seed, sampler=args.sampler, epochs=args.epochs, recipe=args.recipe,
                             data=args.data, train_per_class=args.train_per_class,
                             eval_per_class=args.eval_per_class, objective=args.objective)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    if args.workers > 1:  # plan once here, then the workers share the study
        import multiprocessing as mp

        check_band(space, blocks, settings.band)
        storage = open_storage(args.storage, heartbeat_s=args.heartbeat)
        study, merged, _ = create_or_load(storage, args.study, settings)
        if merged.sampler == "random":
            plan(study, merged)
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_worker, args=(args, settings, threads)) for _ in range(args.workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode for p in procs):
            print(f"ghostnets: {sum(1 for p in procs if p.exitcode)} of {args.workers} workers failed", file=sys.stderr)
            return 1
        from ..blocks_eval.sweep import failures, trial_records

        done = len(trial_records(storage, args.study)[0])
        print(f"study {args.study}: {done} networks trained, {len(failures(storage, args.study))} failed trials")
        return 0
    result = _worker(args, settings, threads)
    print(f"study {args.study}: {result['completed']}/{result['planned']} networks trained ({result['ran_here']} "
          f"trials here, {result['failed']} failed); next: ghostnets blocks measure --storage {args.storage} "
          f"--study {args.study}")
    return 0


def run_measure(args: argparse.Namespace) -> int:
    from ..blocks_eval.measure import measure_study
    from ..blocks_eval.study import open_storage

    _quiet_optuna()
    result = measure_study(open_storage(args.storage), args.study, target=args.target, runtimes=args.runtimes,
                           batches=args.batch, threads=args.threads, runs=args.runs, warmup=args.warmup,
                           calib=args.calib, force=args.force)
    print(f"study {args.study} on {args.target}: {result['measured']} networks x batch timed through "
          f"{', '.join(args.runtimes)} ({result['skipped']} already measured)")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from ..blocks_eval.report import report_study
    from ..blocks_eval.study import open_storage

    _quiet_optuna()
    command = "ghostnets " + " ".join(sys.argv[1:]) if sys.argv and "ghostnets" in sys.argv[0] else ""
    written = report_study(open_storage(args.storage), args.study, args.out, command=command)
    print(f"wrote {len(written)} files to {args.out} (report.md)")
    return 0

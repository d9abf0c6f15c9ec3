"""What every benchmark script shares: the machine description, robust timing, and writing into BENCHMARKS.md."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ghostnets.data.fashion_mnist import class_subset
from ghostnets.measure.machine import cpu_name
from ghostnets.runtime import timing as runtime_timing
from ghostnets.runtime.timing import p90  # noqa: F401  (the scripts' one p90)
from ghostnets.train import train

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


def environment(threads: int) -> str:
    import timm

    import ghostnets

    return (f"{datetime.date.today().isoformat()}, {cpu_name()} ({os.cpu_count()} cores visible, {threads} threads), "
            f"Python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}, "
            f"ghostnets {ghostnets.__version__}")


def time_interleaved(fns: dict[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, list[float]]:
    """ghostnets' timing harness, one call each in turn (round-robin): the paired ratios need the same rounds."""
    return runtime_timing.time_interleaved(fns, runs, warmup, block=1, pause_s=0.0)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """Median over rounds of a_i / b_i: timings taken in the same round share the machine's state at that moment,
    so their ratio is steadier than a ratio of medians on a noisy (virtualised) machine."""
    return statistics.median(x / y for x, y in zip(a, b))


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- name:begin -->`` and ``<!-- name:end -->`` of BENCHMARKS.md."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    tmp = BENCHMARKS_MD.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, BENCHMARKS_MD)


def int8_section(name: str) -> str:
    """The BENCHMARKS.md section of an int8 figure on this machine: ``name`` on a CPU without int8 dot products,
    ``name_vnni`` on one with them (VNNI, AMX, Arm's dot product): the two kinds disagree on int8 accuracy and speed,
    and a run on one must not replace the other's figures."""
    from ghostnets.runtime.quantize import default_weight_bits

    return name + ("_vnni" if default_weight_bits() == 8 else "")


def command_line() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])


def subset(out: Path, per_class: int) -> Path:
    """Fashion-MNIST's first ``per_class`` training images of each class and the whole test split (bundled format)."""
    return class_subset(out, per_class)


def run_training(cfg, out: Path) -> dict:
    """``train(cfg, out)``, or the summary of a run that finished there before (delete the folder to retrain)."""
    summary_file = out / "summary.json"
    if summary_file.exists():  # finished before: reuse (delete the folder to retrain)
        return json.loads(summary_file.read_text())
    return train(cfg, out, force=True, progress_bar=False)

"""The one timing harness: interleaved blocks of timed calls, median and p90 (docs/reference.md §9).

Used by ``ghostnets bench``, INT8's choice of backend and the ``benchmarks/`` scripts.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence


def time_interleaved(fns: Mapping[str, Callable[[], object]], runs: int, warmup: int = 0, *, block: int = 10,
                     pause_s: float = 0.02) -> dict[str, list[float]]:
    """Milliseconds of ``runs`` calls of each zero-argument callable, after ``warmup`` untimed calls of each.

    The callables take turns in blocks of ``block`` timed calls, so drift of a shared machine hits all alike. Not
    call by call by default: each runtime's thread pool (OpenMP, onnxruntime, TBB) spins for a while after a call,
    and on a machine with few cores that steals the next runtime's CPU (3x slower, measured on 2 cores). Before each
    block: a pause of ``pause_s`` (the other pools stop spinning) and one untimed call. ``block=1, pause_s=0`` is a
    plain round-robin (the benchmarks' paired ratios of eager PyTorch models).
    """
    if runs < 1:
        raise ValueError("runs must be >= 1")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    done = 0
    while done < runs:
        n = min(block, runs - done)
        for key, fn in fns.items():
            if len(fns) > 1 and pause_s > 0:
                time.sleep(pause_s)
                fn()
            for _ in range(n):
                start = time.perf_counter()
                fn()
                times[key].append((time.perf_counter() - start) * 1e3)
        done += n
    return times


def p90(times_ms: Sequence[float]) -> float:
    """The 90th percentile (inclusive method; the one value of a single timing)."""
    return statistics.quantiles(times_ms, n=10, method="inclusive")[-1] if len(times_ms) > 1 else times_ms[0]


def summarize(times_ms: Sequence[float], batch_size: int) -> dict[str, float]:
    """``median_ms``, ``p90_ms`` and ``images_per_s`` (batch size / median) of a list of timings."""
    median = statistics.median(times_ms)
    return {"median_ms": median, "p90_ms": p90(times_ms), "images_per_s": batch_size / (median / 1e3)}


def measure(fn: Callable[[], object], batch_size: int, warmup: int = 10, runs: int = 50) -> dict[str, float]:
    """Warm ``fn`` up, time it ``runs`` times: ``{median_ms, p90_ms, images_per_s}`` for ``batch_size`` images."""
    return summarize(time_interleaved({"fn": fn}, runs, warmup)["fn"], batch_size)

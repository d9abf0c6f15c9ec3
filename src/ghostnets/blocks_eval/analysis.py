"""Analysis of the building-block evaluation: per-block Pareto fronts, hypervolume, error EDFs, bootstrap intervals,
speed-ups at equal accuracy and how well MAdds rank latency.

Protocol after Bonnaerens et al., "Hardware-aware mobile building block evaluation for computer vision" (Applied
Sciences 2022, arXiv 2208.12694) and RegNet (Radosavovic et al., "Designing Network Design Spaces", CVPR 2020,
arXiv 2003.13678). Pure functions over flat rows (one per network, target, runtime, batch); no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import GhostnetsError
from ..measure.pareto import pareto_front

COST_KEYS = ("latency_ms", "madds", "params")


def number(value: object) -> float | None:
    """``value`` as a finite float, or None when it is missing, not a number, NaN or infinite."""
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _check_cost_key(cost_key: str) -> None:
    if cost_key not in COST_KEYS:
        raise ValueError(f"cost_key {cost_key!r} is not one of {COST_KEYS}; pass 'latency_ms', 'madds' or 'params'")


def usable(rows: Sequence[Mapping], cost_key: str) -> list[Mapping]:
    """The rows with a finite ``top1`` and a finite ``cost_key`` (failed trials and missing latencies left out)."""
    _check_cost_key(cost_key)
    return [r for r in rows if number(r.get("top1")) is not None and number(r.get(cost_key)) is not None]


def group_rows(rows: Sequence[Mapping]) -> dict[tuple, list[Mapping]]:
    """``{(target, runtime, batch): rows}`` in order of first appearance; rows without latency data go under
    ``(None, None, None)``."""
    groups: dict[tuple, list[Mapping]] = {}
    for r in rows:
        target, batch = r.get("target"), r.get("batch")
        if target is None:
            key = (None, None, None)
        else:
            key = (target, r.get("runtime"), None if batch is None else int(batch))
        groups.setdefault(key, []).append(r)
    return groups


def networks(rows: Sequence[Mapping]) -> list[Mapping]:
    """One row per network (``key``), the first one with a top-1 if any: the MAdds/params views count each once."""
    chosen: dict[object, Mapping] = {}
    for i, r in enumerate(rows):
        k = r.get("key", ("row", i))
        if k not in chosen or (number(chosen[k].get("top1")) is None and number(r.get("top1")) is not None):
            chosen[k] = r
    return list(chosen.values())


def by_block(rows: Sequence[Mapping]) -> dict[str, list[Mapping]]:
    """``{block: rows}`` with the blocks sorted by name."""
    out: dict[str, list[Mapping]] = {}
    for r in rows:
        out.setdefault(str(r.get("block")), []).append(r)
    return dict(sorted(out.items()))


def block_fronts(rows: Sequence[Mapping], cost_key: str) -> dict[str, list[Mapping]]:
    """``{block: rows on its Pareto front of (cost_key, top1), by increasing cost}`` (minimise cost, maximise top-1;
    equal points are both on the front). Pass the rows of one (target, runtime, batch) view."""
    fronts = {}
    for block, mine in by_block(usable(rows, cost_key)).items():
        idx = pareto_front([(number(r[cost_key]), number(r["top1"])) for r in mine])
        fronts[block] = [mine[i] for i in idx]
    return fronts


def hypervolume(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area of the region the (cost, accuracy) points dominate, bounded by ``reference = (ref_cost, ref_acc)``:
    the union of the rectangles [cost, ref_cost] x [ref_acc, acc]. Points with cost >= ref_cost or acc <= ref_acc
    (and missing ones) add nothing. Cost is minimised, accuracy maximised."""
    ref_c, ref_a = (number(v) for v in reference)
    if ref_c is None or ref_a is None:
        raise ValueError(f"reference {reference!r} must be two finite numbers (ref_cost, ref_acc)")
    pts = sorted((c, a) for c, a in ((number(p[0]), number(p[1])) for p in points)
                 if c is not None and a is not None and c < ref_c and a > ref_a)
    area, best = 0.0, ref_a
    for i, (c, a) in enumerate(pts):
        best = max(best, a)  # highest accuracy reachable at cost <= c
        nxt = pts[i + 1][0] if i + 1 < len(pts) else ref_c
        area += (nxt - c) * (best - ref_a)
    return area


def shared_reference(rows: Sequence[Mapping], cost_key: str) -> tuple[float, float]:
    """One reference point for every block of a view: (1.1 x the largest cost, the lowest top-1) over all blocks,
    so that hypervolumes of different blocks are comparable (the worst network adds zero height)."""
    ok = usable(rows, cost_key)
    if not ok:
        raise ValueError(f"no row has both a top1 and a {cost_key}: nothing to take a reference point from")
    return (max(number(r[cost_key]) for r in ok) * 1.1, min(number(r["top1"]) for r in ok))


def edf(errors: Sequence[float], weights: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Error empirical distribution function (RegNet Sec. 3.1): ``(e, F)`` with ``e`` the errors sorted ascending
    and ``F[i]`` the (weighted) fraction of models with error <= ``e[i]``, i.e. the cumulative weight up to and
    including the i-th sorted error. As a right-continuous step function, F(x) = sum of w_j over e_j <= x."""
    e = np.asarray(errors, dtype=float)
    if e.ndim != 1 or e.size == 0 or not np.all(np.isfinite(e)):
        raise ValueError("edf needs a non-empty 1-D sequence of finite errors (error = 100 - top1)")
    w = np.ones_like(e) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != e.shape:
        raise ValueError(f"edf got {e.size} errors but {w.size} weights; pass one weight per error")
    if np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
        raise ValueError("edf weights must be finite, non-negative and not all zero")
    order = np.argsort(e, kind="stable")
    return e[order], np.cumsum(w[order]) / w.sum()


def log_bin_edges(values: Sequence[float], n_bins: int = 5) -> np.ndarray:
    """``n_bins + 1`` log-spaced edges over [min, max] of positive ``values`` (linear if one is <= 0); a single
    value gets one bin around it. Share the edges across blocks so every block is normalised alike."""
    v = np.asarray([x for x in (number(x) for x in values) if x is not None], dtype=float)
    if v.size == 0 or n_bins < 1:
        raise ValueError("log_bin_edges needs at least one finite value and n_bins >= 1")
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        return np.array([lo - 0.5, hi + 0.5]) if lo <= 0 else np.array([lo / 1.01, hi * 1.01])
    return np.geomspace(lo, hi, n_bins + 1) if lo > 0 else np.linspace(lo, hi, n_bins + 1)


def complexity_weights(complexities: Sequence[float], edges: Sequence[float]) -> np.ndarray:
    """Weights that normalise an EDF for complexity (RegNet Sec. 3.3): every bin ``[edges[k], edges[k+1])`` (the
    last one closed) that holds models gets the same total weight, shared equally by its models; the weights sum
    to 1. Models outside [edges[0], edges[-1]] get weight 0."""
    c = np.asarray(complexities, dtype=float)
    ed = np.asarray(edges, dtype=float)
    if ed.ndim != 1 or ed.size < 2 or np.any(np.diff(ed) <= 0) or not np.all(np.isfinite(ed)):
        raise ValueError("edges must be at least two finite, strictly increasing numbers (see log_bin_edges)")
    if c.ndim != 1 or c.size == 0:
        raise ValueError("complexity_weights needs a non-empty 1-D sequence of complexities")
    inside = np.isfinite(c) & (c >= ed[0]) & (c <= ed[-1])
    if not inside.any():
        raise ValueError(f"no complexity lies within the bin edges [{ed[0]}, {ed[-1]}]; widen the edges")
    bins = np.clip(np.searchsorted(ed, np.where(inside, c, ed[0]), side="right") - 1, 0, ed.size - 2)
    w = np.zeros_like(c)
    occupied = np.unique(bins[inside])
    for b in occupied:
        members = inside & (bins == b)
        w[members] = 1.0 / (len(occupied) * members.sum())
    return w


def bootstrap_best_under_budget(costs: Sequence[float], accs: Sequence[float], budget: float, n_boot: int = 2000,
                                seed: int = 0, level: float = 0.95) -> dict:
    """The best accuracy among a block's networks with cost <= ``budget`` and its percentile bootstrap interval.

    Each resample draws the block's networks with replacement; resamples with no network under budget are dropped.
    When fewer than max(10, n_boot // 10) resamples remain (or none is under budget), low/high are None and
    ``note`` says why. The bootstrap of a maximum cannot exceed the sample best, so ``high`` is usually ``best``.
    """
    if len(costs) != len(accs):
        raise ValueError(f"got {len(costs)} costs but {len(accs)} accuracies; pass one of each per network")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"level must lie in (0, 1) and n_boot >= 1 (got level={level}, n_boot={n_boot})")
    if number(budget) is None:
        raise ValueError(f"budget {budget!r} must be a finite number")
    pairs = [(number(c), number(a)) for c, a in zip(costs, accs)]
    pairs = [(c, a) for c, a in pairs if c is not None and a is not None]
    c = np.array([p[0] for p in pairs], dtype=float)
    a = np.array([p[1] for p in pairs], dtype=float)
    under = c <= budget
    out = {"best": None, "low": None, "high": None, "n": int(under.sum()), "kept": 0, "n_boot": n_boot,
           "level": level, "budget": float(budget), "note": None}
    if not under.any():
        out["note"] = "no network within budget"
        return out
    out["best"] = float(a[under].max())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(pairs), size=(n_boot, len(pairs)))
    masked = np.where(under[idx], a[idx], -np.inf)
    bests = masked.max(axis=1)
    bests = bests[np.isfinite(bests)]
    out["kept"] = int(bests.size)
    if bests.size < max(10, n_boot // 10):
        out["note"] = f"only {bests.size} of {n_boot} resamples had a network within budget: no interval"
        return out
    tail = (1 - level) / 2
    out["low"], out["high"] = (float(q) for q in np.quantile(bests, [tail, 1 - tail]))
    if out["n"] == 1:
        out["note"] = "one network within budget: the interval is degenerate"
    return out


def speedup_at_equal_accuracy(fronts_by_block: Mapping[str, Sequence[Mapping]], accuracy: float,
                              cost_key: str = "latency_ms") -> dict[str, float | None]:
    """``{block: the least cost on its front with top1 >= accuracy, or None if the block never reaches it}``."""
    _check_cost_key(cost_key)
    out = {}
    for block, front in fronts_by_block.items():
        reach = [r for r in front if number(r.get("top1")) is not None and number(r["top1"]) >= accuracy]
        costs = [x for x in (number(r.get(cost_key)) for r in reach) if x is not None]
        out[block] = min(costs) if costs else None
    return out


def default_levels(fronts: Mapping[str, Sequence[Mapping]]) -> list[float]:
    """The highest top-1 every block reaches (min over blocks of each block's best) and the median of the blocks'
    bests (reached by at least half of them), without repeats."""
    bests = sorted(max(number(r["top1"]) for r in f) for f in fronts.values() if f)
    if not bests:
        return []
    return list(dict.fromkeys([bests[0], float(np.median(bests))]))


def speedup_table(rows: Sequence[Mapping], levels: Sequence[float] | None = None,
                  cost_key: str = "latency_ms") -> list[dict]:
    """Per accuracy level: the cheapest block to reach it, every block's cost and cost / the best's cost ("x slower
    than the best", None if it never gets there), and ``worst_over_best`` among the blocks that reach it (the
    paper's "up to 2x"). ``rows``: one view; ``levels`` default to :func:`default_levels`."""
    fronts = block_fronts(rows, cost_key)
    levels = default_levels(fronts) if levels is None else list(levels)
    table = []
    for level in levels:
        costs = speedup_at_equal_accuracy(fronts, level, cost_key)
        reached = {b: c for b, c in costs.items() if c is not None}
        row = {"accuracy": float(level), "best_block": None, "best_cost": None, "costs": costs,
               "slowdown": {b: None for b in costs}, "worst_over_best": None}
        if reached:
            best_block = min(reached, key=lambda b: (reached[b], b))
            best = reached[best_block]
            row["best_block"], row["best_cost"] = best_block, best
            if best > 0:
                row["slowdown"] = {b: (c / best if c is not None else None) for b, c in costs.items()}
                row["worst_over_best"] = max(reached.values()) / best
        table.append(row)
    return table


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size)
    ranks[order] = np.arange(1, x.size + 1)
    for v in np.unique(x):  # ties share the mean of the ranks they span
        tied = x == v
        ranks[tied] = ranks[tied].mean()
    return ranks


def rank_agreement(xs: Sequence[float], ys: Sequence[float]) -> dict:
    """Kendall's tau-b (ties corrected) and Spearman's rho (Pearson on average ranks) of paired ``xs``, ``ys``;
    a coefficient is None when it is undefined (fewer than 2 pairs, or one side all tied)."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"rank_agreement needs two 1-D sequences of equal length (got {x.shape} and {y.shape})")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("rank_agreement got a missing or non-finite value; drop incomplete pairs first")
    n = x.size
    out = {"kendall_tau": None, "spearman": None, "n": int(n)}
    if n < 2:
        return out
    concordant = discordant = tie_x = tie_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
            tie_x += dx == 0
            tie_y += dy == 0
            concordant += dx * dy > 0
            discordant += dx * dy < 0
    n0 = n * (n - 1) / 2
    denom = math.sqrt((n0 - tie_x) * (n0 - tie_y))
    if denom > 0:
        out["kendall_tau"] = float((concordant - discordant) / denom)
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    sd = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    if sd > 0:
        out["spearman"] = float((rx * ry).sum() / sd)
    return out


def misordered_pairs(madds: Mapping[str, float], latency: Mapping[str, float]) -> list[dict]:
    """Block pairs MAdds order one way and latency strictly the other (Ma et al., ShuffleNetV2, ECCV 2018)."""
    blocks = sorted(b for b in madds if b in latency and madds[b] is not None and latency[b] is not None)
    out = []
    for i, a in enumerate(blocks):
        for b in blocks[i + 1:]:
            if (madds[a] - madds[b]) * (latency[a] - latency[b]) < 0:
                lo, hi = (a, b) if madds[a] < madds[b] else (b, a)
                out.append({"fewer_madds": lo, "faster": hi, "madds": [madds[lo], madds[hi]],
                            "latency_ms": [latency[lo], latency[hi]]})
    return out


def ranking_by_madds_vs_latency(rows: Sequence[Mapping], accuracy: float | None = None) -> dict:
    """How well MAdds rank measured latency in one view: per network, per block by median MAdds vs median latency,
    and per block by the cost to reach ``accuracy`` (default: the highest top-1 every block reaches) on its MAdds
    front vs its latency front; each with Kendall tau-b, Spearman and the block pairs MAdds get wrong."""
    timed = [r for r in rows if number(r.get("madds")) is not None and number(r.get("latency_ms")) is not None]
    if not timed:
        raise GhostnetsError("no row has both madds and latency_ms: measure latencies before ranking MAdds by them")
    result = {"networks": rank_agreement([number(r["madds"]) for r in timed],
                                         [number(r["latency_ms"]) for r in timed])}
    groups = by_block(timed)
    med_m = {b: float(np.median([number(r["madds"]) for r in g])) for b, g in groups.items()}
    med_l = {b: float(np.median([number(r["latency_ms"]) for r in g])) for b, g in groups.items()}
    result["blocks_median"] = {**rank_agreement(list(med_m.values()), [med_l[b] for b in med_m]),
                               "madds": med_m, "latency_ms": med_l, "misordered": misordered_pairs(med_m, med_l)}
    lat_fronts, madd_fronts = block_fronts(timed, "latency_ms"), block_fronts(timed, "madds")
    if accuracy is None:
        levels = default_levels(lat_fronts)
        accuracy = levels[0] if levels else None
    at = {"accuracy": accuracy, "kendall_tau": None, "spearman": None, "n": 0, "madds": {}, "latency_ms": {},
          "misordered": []}
    if accuracy is not None:
        m = speedup_at_equal_accuracy(madd_fronts, accuracy, "madds")
        lat = speedup_at_equal_accuracy(lat_fronts, accuracy, "latency_ms")
        both = [b for b in m if m[b] is not None and lat.get(b) is not None]
        at.update(rank_agreement([m[b] for b in both], [lat[b] for b in both]))
        at.update(madds={b: m[b] for b in both}, latency_ms={b: lat[b] for b in both},
                  misordered=misordered_pairs({b: m[b] for b in both}, {b: lat[b] for b in both}))
    result["blocks_at_accuracy"] = at
    return result

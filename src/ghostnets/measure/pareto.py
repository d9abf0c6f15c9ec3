"""Pareto fronts of cost against accuracy, and the benchmark's plots (docs/reference.md §10: compare blocks by
the front of accuracy against *measured* cost on each target, not MAdds alone)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..atomic import atomic_write


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (minimise cost, maximise accuracy), by increasing cost.

    ``q`` dominates ``p`` when ``q`` costs no more, is no less accurate, and is better in one of the two. Equal
    points do not dominate each other: both are on the front. Points with a missing (None or NaN) coordinate are
    never on it.
    """
    valid = [i for i, (c, a) in enumerate(points)
             if c is not None and a is not None and not (math.isnan(c) or math.isnan(a))]
    front = [i for i in valid
             if not any(points[j][0] <= points[i][0] and points[j][1] >= points[i][1] and points[j] != points[i]
                        for j in valid)]
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def _number(value: object) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _panel(ax, rows: list[Mapping], x_key: str, y_key: str, x_scale: float, minimise_y: bool) -> None:
    """Scatter ``rows`` (one series per batch size), the Pareto front of each as a line through ringed points."""
    batches = sorted({int(r["batch"]) for r in rows})
    for colour, batch in enumerate(batches):
        series = [r for r in rows if int(r["batch"]) == batch]
        xs = [_number(r[x_key]) * x_scale for r in series]
        ys = [_number(r[y_key]) for r in series]
        c = f"C{colour}"
        ax.scatter(xs, ys, color=c, s=22, alpha=0.6, label=f"batch {batch}")
        for x, y, r in zip(xs, ys, series):
            ax.annotate(str(r["model"]), (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        front = pareto_front([(x, -y if minimise_y else y) for x, y in zip(xs, ys)])
        ax.plot([xs[i] for i in front], [ys[i] for i in front], color=c, linewidth=1.2, drawstyle="steps-post")
        ax.scatter([xs[i] for i in front], [ys[i] for i in front], s=70, facecolors="none", edgecolors=c,
                   linewidths=1.5, label=f"Pareto front, batch {batch}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


def plot_results(rows: Sequence[Mapping], out_dir: str | Path, *, overwrite: bool = True) -> list[Path]:
    """Per runtime, ``latency_vs_madds_<runtime>.png`` and ``accuracy_vs_latency_<runtime>.png`` in ``out_dir``.

    ``rows``: mappings with ``model``, ``runtime``, ``batch``, ``median_ms``, ``madds`` and ``top1`` (rows without a
    latency are skipped; rows without a top-1 stay out of the accuracy plot). Each file is written atomically.
    """
    from matplotlib.figure import Figure  # a figure of its own: no pyplot state, the Agg canvas

    out_dir = Path(out_dir)
    timed = [r for r in rows if _number(r.get("median_ms")) is not None]
    written = []
    for runtime in dict.fromkeys(r["runtime"] for r in timed):
        mine = [r for r in timed if r["runtime"] == runtime]
        plots = [
            (f"latency_vs_madds_{runtime}.png", [r for r in mine if _number(r.get("madds")) is not None],
             "madds", "median_ms", 1e-6, True, "MAdds (M) per image", "median latency per batch (ms)",
             "Pareto front: fewest MAdds and lowest latency"),
            (f"accuracy_vs_latency_{runtime}.png", [r for r in mine if _number(r.get("top1")) is not None],
             "median_ms", "top1", 1.0, False, "median latency per batch (ms)", "ImageNet top-1 (%, model card)",
             "Pareto front: lowest latency and highest top-1"),
        ]
        for name, selected, x_key, y_key, x_scale, minimise_y, x_label, y_label, subtitle in plots:
            if not selected:
                continue
            fig = Figure(figsize=(7, 5), dpi=120)
            ax = fig.add_subplot()
            _panel(ax, selected, x_key, y_key, x_scale, minimise_y)
            if x_key == "median_ms":
                ax.set_xscale("log")
            ax.set_xlabel(x_label)
            ax.set_ylabel(y_label)
            ax.set_title(f"{runtime}: {subtitle}", fontsize=9)
            fig.tight_layout()
            written.append(atomic_write(out_dir / name, lambda tmp, fig=fig: fig.savefig(tmp, format="png"),
                                        overwrite=overwrite))
    return written

"""The report of the building-block evaluation: tables (CSV, JSON, Markdown) and plots of accuracy against measured
latency, MAdds and params per block, and the complexity-normalised error EDFs (Bonnaerens et al., Applied Sciences
2022, arXiv 2208.12694; RegNet, Radosavovic et al., CVPR 2020, arXiv 2003.13678)."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..errors import GhostnetsError
from .analysis import (
    block_fronts,
    bootstrap_best_under_budget,
    by_block,
    complexity_weights,
    edf,
    group_rows,
    hypervolume,
    log_bin_edges,
    networks,
    number,
    ranking_by_madds_vs_latency,
    shared_reference,
    speedup_table,
    usable,
)

ROW_FIELDS = ["key", "block", "top1", "params", "madds", "target", "runtime", "batch", "latency_ms"]
META_FIELDS = ["study", "design_space", "training", "machine", "date", "command"]
UNITS = {"latency_ms": "ms", "madds": "MAdds", "params": "params"}
LABELS = {"latency_ms": "median latency (ms, log scale)", "madds": "MAdds per image", "params": "parameters"}


def _safe(text: object) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "none"


def _fmt(value: object, digits: int = 3) -> str:
    v = number(value)
    if v is None:
        return "—"
    return f"{v:.{digits}g}" if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-2) else f"{v:.{digits}f}"


def summarise_view(rows: Sequence[Mapping], cost_key: str, seed: int = 0) -> dict | None:
    """Per block n, best top-1, hypervolume (shared reference) and the bootstrap best under the view's budget (the
    median cost of all its networks), plus the speed-up table; None when no row has a top-1 and this cost."""
    ok = usable(rows, cost_key)
    if not ok:
        return None
    reference = shared_reference(ok, cost_key)
    fronts = block_fronts(ok, cost_key)
    budget = float(np.median([number(r[cost_key]) for r in ok]))
    blocks = {}
    for block, mine in by_block(ok).items():
        costs, accs = [number(r[cost_key]) for r in mine], [number(r["top1"]) for r in mine]
        blocks[block] = {
            "n": len(mine), "best_top1": max(accs),
            "hypervolume": hypervolume([(number(r[cost_key]), number(r["top1"])) for r in fronts[block]], reference),
            "front": [r.get("key") for r in fronts[block]],
            "bootstrap": bootstrap_best_under_budget(costs, accs, budget, seed=seed),
        }
    return {"cost_key": cost_key, "reference": list(reference), "budget": budget, "blocks": blocks,
            "speedups": speedup_table(ok, cost_key=cost_key)}


def _views(rows: Sequence[Mapping]) -> list[dict]:
    """Every view: one per (target, runtime, batch) with latencies, then the MAdds and params views."""
    views = []
    for (target, runtime, batch), mine in group_rows(rows).items():
        if target is None or not usable(mine, "latency_ms"):
            continue
        views.append({"name": f"latency_{_safe(target)}_{_safe(runtime)}_b{batch}", "cost_key": "latency_ms",
                      "target": target, "runtime": runtime, "batch": batch, "rows": mine,
                      "png": f"front_latency_{_safe(target)}_{_safe(runtime)}_b{batch}.png"})
    nets = networks(rows)
    for cost_key in ("madds", "params"):
        if usable(nets, cost_key):
            views.append({"name": cost_key, "cost_key": cost_key, "target": None, "runtime": None, "batch": None,
                          "rows": nets, "png": f"front_{cost_key}.png"})
    return views


def _front_png(view: dict, colours: Mapping[str, str], title: str):
    from matplotlib.figure import Figure  # a figure of its own: no pyplot state, the Agg canvas

    cost_key = view["cost_key"]
    fig = Figure(figsize=(7, 5), dpi=120)
    ax = fig.add_subplot()
    fronts = block_fronts(view["rows"], cost_key)
    for block, mine in by_block(usable(view["rows"], cost_key)).items():
        c = colours[block]
        ax.scatter([number(r[cost_key]) for r in mine], [number(r["top1"]) for r in mine], color=c, s=22,
                   alpha=0.6, label=block)
        fx, fy = [number(r[cost_key]) for r in fronts[block]], [number(r["top1"]) for r in fronts[block]]
        ax.plot(fx, fy, color=c, linewidth=1.2, drawstyle="steps-post")
        ax.scatter(fx, fy, s=70, facecolors="none", edgecolors=c, linewidths=1.5)
    if cost_key == "latency_ms":
        ax.set_xscale("log")
    ax.set_xlabel(LABELS[cost_key])
    ax.set_ylabel("held-out top-1 (%)")
    ax.set_title(f"{title}: accuracy vs {UNITS[cost_key]}, Pareto front per block (ringed)", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _edf_png(nets: Sequence[Mapping], colours: Mapping[str, str], title: str):
    from matplotlib.figure import Figure

    done = [r for r in nets if number(r.get("top1")) is not None]
    normalise = all(number(r.get("madds")) is not None for r in done)
    edges = log_bin_edges([r["madds"] for r in done], n_bins=5) if normalise else None
    fig = Figure(figsize=(7, 5), dpi=120)
    ax = fig.add_subplot()
    for block, mine in by_block(done).items():
        errors = [100.0 - number(r["top1"]) for r in mine]
        weights = complexity_weights([number(r["madds"]) for r in mine], edges) if normalise else None
        e, f = edf(errors, weights)
        ax.step(np.concatenate([[e[0]], e]), np.concatenate([[0.0], f]), where="post", color=colours[block],
                label=f"{block} (n={len(mine)})")
    ax.set_xlabel("top-1 error (%)")
    ax.set_ylabel("cumulative fraction of models" + (" (normalised for MAdds)" if normalise else ""))
    ax.set_title(f"{title}: error EDF per block (RegNet Sec. 3)", fontsize=9)
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _csv_writer(fields: list[str], records: list[Mapping]):
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            for r in records:
                w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
    return write


def _jsonable(obj):
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _view_title(view: dict) -> str:
    if view["cost_key"] == "latency_ms":
        return f"{view['target']} / {view['runtime']} / batch {view['batch']}"
    return f"all networks by {UNITS[view['cost_key']]}"


def _markdown(title: str, meta: Mapping, views: list[dict], summaries: dict, edf_name: str | None) -> str:
    lines = [f"# {title}", "", "| | |", "|---|---|"]
    for k in META_FIELDS + sorted(k for k in meta if k not in META_FIELDS):
        lines.append(f"| {k.replace('_', ' ')} | {meta.get(k, '—')} |")
    lines += ["", "Fronts: accuracy against cost per block (minimise cost, maximise top-1). Hypervolume: area "
              "dominated by a block's front up to the view's shared reference (1.1 x the largest cost, the lowest "
              "top-1), in cost x percentage points. Bootstrap: best top-1 within the budget (the view's median "
              "cost), 95% percentile interval over resampled networks.", ""]
    for view in views:
        s = summaries[view["name"]]
        unit = UNITS[view["cost_key"]]
        lines += [f"## {_view_title(view)}", "", f"![{view['name']}]({view['png']})", "",
                  f"Reference point ({_fmt(s['reference'][0])} {unit}, {_fmt(s['reference'][1])} %); budget "
                  f"{_fmt(s['budget'])} {unit}.", "",
                  "| block | n | best top-1 (%) | hypervolume | best under budget [low, high] |",
                  "|---|---|---|---|---|"]
        for block, b in s["blocks"].items():
            bs = b["bootstrap"]
            ci = f"{_fmt(bs['best'])} [{_fmt(bs['low'])}, {_fmt(bs['high'])}]" + (f" ({bs['note']})"
                                                                                   if bs["note"] else "")
            lines.append(f"| {block} | {b['n']} | {_fmt(b['best_top1'])} | {_fmt(b['hypervolume'])} | {ci} |")
        blocks = list(s["blocks"])
        lines += ["", f"Cost to reach a top-1 level (x the best block's {unit}; — never reaches it):", "",
                  "| top-1 ≥ (%) | best block | " + " | ".join(blocks) + " | worst / best |",
                  "|---|---|" + "---|" * (len(blocks) + 1)]
        for t in s["speedups"]:
            cells = [f"{_fmt(t['slowdown'][b], 2)}x ({_fmt(t['costs'][b])})" if t["costs"][b] is not None else "—"
                     for b in blocks]
            lines.append(f"| {_fmt(t['accuracy'])} | {t['best_block'] or '—'} | " + " | ".join(cells)
                         + f" | {_fmt(t['worst_over_best'], 2)} |")
        ranking = s.get("ranking")
        if ranking:
            lines += ["", "MAdds vs measured latency (Kendall tau-b, Spearman rho):", ""]
            for label, part in (("networks", ranking["networks"]), ("blocks, median", ranking["blocks_median"]),
                                ("blocks, cost at equal top-1", ranking["blocks_at_accuracy"])):
                lines.append(f"- {label} (n={part['n']}): tau {_fmt(part['kendall_tau'])}, "
                             f"rho {_fmt(part['spearman'])}")
            for label in ("blocks_median", "blocks_at_accuracy"):
                for p in ranking[label]["misordered"]:
                    lines.append(f"- misordered ({label.replace('_', ' ')}): {p['fewer_madds']} has fewer MAdds "
                                 f"but {p['faster']} is faster ({_fmt(p['latency_ms'][1])} vs "
                                 f"{_fmt(p['latency_ms'][0])} ms)")
            if not (ranking["blocks_median"]["misordered"] or ranking["blocks_at_accuracy"]["misordered"]):
                lines.append("- MAdds order the blocks as latency does.")
        lines.append("")
    if edf_name:
        lines += ["## Error EDF", "", f"![error EDF]({edf_name})", "",
                  "F(e): weighted fraction of a block's networks with top-1 error <= e; weights make every MAdds bin "
                  "(log-spaced, shared by all blocks) count equally (RegNet Sec. 3.3).", ""]
    if not any(v["cost_key"] == "latency_ms" for v in views):
        lines += ["No latency was measured: only the MAdds and params views.", ""]
    return "\n".join(lines)


def write_report(rows: Sequence[Mapping], out_dir: str | Path, *, title: str, meta: Mapping,
                 overwrite: bool = True) -> list[Path]:
    """Write rows.csv, fronts.csv, summary.json, one front PNG per view, edf.png and report.md into ``out_dir``
    (each atomically); returns the paths written. Rows: flat dicts, one per (network, target, runtime, batch)."""
    rows = list(rows)
    if not any(number(r.get("top1")) is not None for r in rows):
        raise GhostnetsError(f"no completed trial in study {meta.get('study', title)!r}: {len(rows)} rows, none "
                             "with a top1; run the sweep (or check why its trials failed) before the report")
    out_dir = Path(out_dir)
    views = _views(rows)
    colours = {b: f"C{i % 10}" for i, b in enumerate(by_block(rows))}
    summaries, front_records = {}, []
    for view in views:
        s = summarise_view(view["rows"], view["cost_key"])
        if view["cost_key"] == "latency_ms":
            try:
                s["ranking"] = ranking_by_madds_vs_latency(view["rows"])
            except GhostnetsError:
                s["ranking"] = None
        s.update(target=view["target"], runtime=view["runtime"], batch=view["batch"], png=view["png"])
        summaries[view["name"]] = s
        on_front = {id(r) for f in block_fronts(view["rows"], view["cost_key"]).values() for r in f}
        for r in usable(view["rows"], view["cost_key"]):
            front_records.append({"view": view["name"], "cost_key": view["cost_key"], "target": view["target"],
                                  "runtime": view["runtime"], "batch": view["batch"], "block": r.get("block"),
                                  "key": r.get("key"), "cost": r[view["cost_key"]], "top1": r["top1"],
                                  "on_front": int(id(r) in on_front)})
    written = []
    extra = sorted({k for r in rows for k in r} - set(ROW_FIELDS))
    written.append(atomic_write(out_dir / "rows.csv", _csv_writer(ROW_FIELDS + extra, rows), overwrite=overwrite))
    front_fields = ["view", "cost_key", "target", "runtime", "batch", "block", "key", "cost", "top1", "on_front"]
    written.append(atomic_write(out_dir / "fronts.csv", _csv_writer(front_fields, front_records),
                                overwrite=overwrite))
    summary = _jsonable({"title": title, "meta": dict(meta), "views": summaries})
    written.append(atomic_write(out_dir / "summary.json", lambda tmp: tmp.write_text(
        json.dumps(summary, indent=2, allow_nan=False) + "\n"), overwrite=overwrite))
    for view in views:
        fig = _front_png(view, colours, _view_title(view))
        written.append(atomic_write(out_dir / view["png"], lambda tmp, fig=fig: fig.savefig(tmp, format="png"),
                                    overwrite=overwrite))
    edf_name = None
    nets = networks(rows)
    if any(number(r.get("top1")) is not None for r in nets):
        fig = _edf_png(nets, colours, title)
        edf_name = "edf.png"
        written.append(atomic_write(out_dir / edf_name, lambda tmp: fig.savefig(tmp, format="png"),
                                    overwrite=overwrite))
    text = _markdown(title, meta, views, summaries, edf_name)
    written.append(atomic_write(out_dir / "report.md", lambda tmp: tmp.write_text(text), overwrite=overwrite))
    return written


def study_rows(records: Sequence[Mapping], latencies: Mapping[tuple, Mapping]) -> list[dict]:
    """The flat rows :func:`write_report` reads: one per (network, target, runtime, batch) measured, and one with no
    latency for a network not measured anywhere (it still shows in the MAdds and params views)."""
    by_key: dict[str, list] = {}
    for (target, runtime, batch, key), figures in latencies.items():
        by_key.setdefault(key, []).append((target, runtime, batch, figures))
    rows = []
    for r in records:
        base = {"key": r["key"], "block": r["block"], "top1": r["top1"], "params": r["params"], "madds": r["madds"]}
        measured_here = by_key.get(r["key"], [])
        for target, runtime, batch, figures in sorted(measured_here, key=lambda m: m[:3]):
            rows.append({**base, "target": target, "runtime": runtime, "batch": batch,
                         "latency_ms": figures.get("median_ms"), "error": figures.get("error")})
        if not measured_here:
            rows.append({**base, "target": None, "runtime": None, "batch": None, "latency_ms": None})
    return rows


def report_study(storage, study_name: str, out_dir: str | Path, *, command: str = "",
                 overwrite: bool = True) -> list[Path]:
    """``ghostnets blocks report``: the study's networks and latencies through :func:`write_report`."""
    import datetime

    from .study import measured
    from .sweep import failures, trial_records

    records, settings, study = trial_records(storage, study_name)
    latencies = measured(study)
    machines = sorted({f"{t}: {f.get('machine')}" for (t, *_), f in latencies.items() if f.get("machine")})
    data = settings.data or "bundled Fashion-MNIST"
    if settings.train_per_class or settings.eval_per_class:
        data += (f" ({settings.train_per_class or 'all'} training / {settings.eval_per_class or 'all'} held-out "
                 "images per class)")
    meta = {"study": study_name, "design_space": f"{settings.space.as_dict()} (fingerprint "
                                                 f"{settings.space.fingerprint()})",
            "training": f"recipe {settings.recipe}, {settings.epochs} epochs on {data}, seed {settings.seed}",
            "sampling": f"{settings.sampler}, {settings.samples} networks per block in "
                        f"{settings.band[0] / 1e6:g}M..{settings.band[1] / 1e6:g}M MAdds; blocks "
                        f"{', '.join(settings.blocks)}",
            "networks": f"{len(records)} trained, {len(failures(storage, study_name))} failed trials",
            "machine": "; ".join(machines) or "no latency measured yet",
            "date": datetime.date.today().isoformat(), "command": command}
    return write_report(study_rows(records, latencies), out_dir, title=f"Block evaluation: {study_name}", meta=meta,
                        overwrite=overwrite)

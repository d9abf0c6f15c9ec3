"""The hardware-aware block evaluation on this machine (docs/reference.md §10): a sweep of sampled networks of each
block, trained on a subset of the bundled data, timed through eager PyTorch, ONNX Runtime, OpenVINO and INT8 at batch
1, reported under docs/blocks-report/ and summarised in BENCHMARKS.md ("blocks" section).

Every step resumes: the sweep's study keeps what was trained, ``measure`` skips what was timed. Run it again to
continue a sweep that was stopped (or spans sessions); ``--report-only`` rewrites the report and the summary from the
study as it is.

    python benchmarks/block_evaluation.py                    # the committed study (about 1.5 h on 2 cores)
    python benchmarks/block_evaluation.py --report-only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import ROOT, command_line, environment, write_section

BLOCKS = "ghost,ghostv2,repghost,mbv2,mbv3,shufflev1,shufflev2,se,eca,res2net,edgenext_conv,mgic_mbv3"
RUNTIMES = "eager,onnxruntime,openvino,int8"


def ghostnets(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "ghostnets", *args], check=True, cwd=ROOT)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f} %"


def summary_markdown(summary: dict, args: argparse.Namespace, threads: int) -> str:
    meta = summary["meta"]
    lines = [
        "## Hardware-aware block evaluation (Fashion-MNIST 32 px, this CPU)",
        "",
        f"Regenerate: `{command_line()}` (resumable; the study is `{args.storage}`, study `{args.study}`). "
        f"{environment(threads)}.",
        "",
        f"Protocol: {meta['sampling']}; {meta['training']}; {meta['networks']}. Latency: the deploy form of each "
        f"network, batch 1, {threads} thread, median of {args.runs} calls, runtimes taking turns per network "
        "(`ghostnets blocks measure`). The full report with every front, EDF and table: "
        "[docs/blocks-report/report.md](docs/blocks-report/report.md).",
        "",
        "| view | networks | best block at equal top-1 (level) | worst / best cost at that level | "
        "MAdds vs latency: Kendall tau over networks, over blocks | blocks MAdds orders wrongly |",
        "|---|---|---|---|---|---|",
    ]
    for name, view in summary["views"].items():
        if not view:
            continue
        n = sum(b["n"] for b in view["blocks"].values())
        speed = view["speedups"][0] if view.get("speedups") else None
        best = f"{speed['best_block']} ({_pct(speed['accuracy'])})" if speed else "–"
        ratio = f"{speed['worst_over_best']:.2f}x" if speed and speed.get("worst_over_best") else "–"
        ranking = view.get("ranking") or {}
        tau_n = (ranking.get("networks") or {}).get("kendall_tau")
        tau_b = (ranking.get("blocks_at_accuracy") or ranking.get("blocks_median") or {}).get("kendall_tau")
        wrong = (ranking.get("blocks_at_accuracy") or ranking.get("blocks_median") or {}).get("misordered") or []
        tau = " / ".join("–" if t is None else f"{t:+.2f}" for t in (tau_n, tau_b)) if ranking else "–"
        label = name.replace("latency_", "").replace("_b1", ", batch 1")
        lines.append(f"| {label} | {n} | {best} | {ratio} | {tau} | {len(wrong)} pairs |")
    lines += ["", "At the higher common level (the median of the blocks' best top-1; only blocks that reach it):", ""]
    for name, view in summary["views"].items():
        if view and len(view.get("speedups") or []) > 1:
            s = view["speedups"][-1]
            slow = sorted(((r, b) for b, r in s["slowdown"].items() if r), reverse=True)
            lines.append(f"- {name.replace('latency_', '').replace('_b1', ', batch 1')}: at {s['accuracy']:.1f} % the "
                         f"cheapest is {s['best_block']}; {slow[0][1]} needs {slow[0][0]:.2f}x its cost "
                         f"({', '.join(f'{b} {r:.2f}x' for r, b in slow[1:])}).")
    eager = summary["views"].get(f"latency_{args.target}_eager_b1") or {}
    if eager.get("blocks"):
        lines += ["", "Best held-out top-1 per block (all networks) and the bootstrap 95 % interval of the best top-1 "
                      f"under the eager latency budget {eager['budget']:.2f} ms (the median network):", "",
                  "| block | networks | best top-1 | best under budget [95 % interval] |", "|---|---|---|---|"]
        for block, b in sorted(eager["blocks"].items(), key=lambda kv: -(kv[1]["best_top1"] or 0)):
            boot = b["bootstrap"]
            interval = (f"{_pct(boot['best'])} [{_pct(boot['low'])}, {_pct(boot['high'])}]"
                        if boot.get("best") is not None else boot.get("note") or "–")
            lines.append(f"| {block} | {b['n']} | {_pct(b['best_top1'])} | {interval} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", default="sqlite:///runs/blocks.db")
    parser.add_argument("--study", default="fm32")
    parser.add_argument("--blocks", default=BLOCKS)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--madds", default="2M:8M")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-per-class", type=int, default=300)
    parser.add_argument("--eval-per-class", type=int, default=200)
    parser.add_argument("--target", default="this-cpu")
    parser.add_argument("--runtimes", default=RUNTIMES)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="threads of every runtime when timing")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "blocks-report")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    study = ["--storage", args.storage, "--study", args.study]
    if not args.report_only:
        ghostnets("blocks", "sweep", *study, "--blocks", args.blocks, "--samples", str(args.samples), "--madds",
                  args.madds, "--epochs", str(args.epochs), "--train-per-class", str(args.train_per_class),
                  "--eval-per-class", str(args.eval_per_class))
        ghostnets("blocks", "measure", *study, "--target", args.target, "--runtimes", args.runtimes, "--batch", "1",
                  "--threads", str(args.threads), "--runs", str(args.runs))
    ghostnets("blocks", "report", *study, "--out", str(args.out))
    summary = json.loads((args.out / "summary.json").read_text())
    write_section("blocks", summary_markdown(summary, args, args.threads))


if __name__ == "__main__":
    main()

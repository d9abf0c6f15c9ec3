"""Analysis and report of the building-block evaluation (issue 14; Bonnaerens et al. 2022, RegNet Sec. 3): every
expected figure below is worked out by hand in the comment next to it."""

from __future__ import annotations

import csv
import json
import math
import random

import pytest

from ghostnets.blocks_eval.analysis import (
    block_fronts,
    bootstrap_best_under_budget,
    complexity_weights,
    edf,
    group_rows,
    hypervolume,
    log_bin_edges,
    rank_agreement,
    ranking_by_madds_vs_latency,
    shared_reference,
    speedup_at_equal_accuracy,
    speedup_table,
)
from ghostnets.blocks_eval.report import write_report
from ghostnets.errors import GhostnetsError


def row(key, block, latency, top1, madds=None, params=None, target="this-cpu", runtime="eager", batch=1):
    return {"key": key, "block": block, "top1": top1, "params": params, "madds": madds, "target": target,
            "runtime": runtime, "batch": batch, "latency_ms": latency}


# --- fronts -----------------------------------------------------------------------------------------------------

def test_block_fronts_with_ties_and_missing_values():
    rows = [row("a1", "a", 1, 70), row("a2", "a", 2, 80), row("a3", "a", 2, 75),  # a3: same cost, less top-1
            row("a4", "a", 3, 80),  # a4: more cost, same top-1 as a2 -> dominated
            row("a5", "a", 2, 80),  # a5 equals a2: equal points do not dominate each other, both stay
            row("a6", "a", 4, 90), row("a7", "a", None, 99), row("a8", "a", 0.5, None),  # missing -> left out
            row("b1", "b", 5, 60)]
    fronts = block_fronts(rows, "latency_ms")
    assert list(fronts) == ["a", "b"]
    assert [r["key"] for r in fronts["a"]] == ["a1", "a2", "a5", "a6"]  # by increasing cost
    assert [r["key"] for r in fronts["b"]] == ["b1"]
    with pytest.raises(ValueError, match="cost_key"):
        block_fronts(rows, "flops")


def test_group_rows_by_view():
    rows = [row("a1", "a", 1, 70), row("a1", "a", 3, 70, batch=8), row("a1", "a", None, 70, target=None,
                                                                          runtime=None, batch=None)]
    groups = group_rows(rows)
    assert list(groups) == [("this-cpu", "eager", 1), ("this-cpu", "eager", 8), (None, None, None)]
    assert all(len(g) == 1 for g in groups.values())


# --- hypervolume ------------------------------------------------------------------------------------------------

def test_hypervolume_one_two_three_points():
    # one point (2, 80), reference (10, 50): (10 - 2) * (80 - 50) = 8 * 30 = 240
    assert hypervolume([(2, 80)], (10, 50)) == pytest.approx(240)
    # (2, 70) and (5, 90): union of [2,10]x[50,70] (160) and [5,10]x[50,90] (200) minus overlap [5,10]x[50,70]
    # (100) = 260; equally strips [2,5) x 20 = 60 plus [5,10) x 40 = 200
    assert hypervolume([(5, 90), (2, 70)], (10, 50)) == pytest.approx(260)
    # (1, 60), (3, 80) and (4, 70) (dominated by (3, 80)), reference (6, 50): strips [1,3) x 10 = 20,
    # [3,6) x 30 = 90 -> 110; (7, 95) costs >= ref_cost and (2, 40) is below ref_acc: they add nothing
    assert hypervolume([(1, 60), (3, 80), (4, 70), (7, 95), (2, 40)], (6, 50)) == pytest.approx(110)
    assert hypervolume([], (6, 50)) == 0.0
    with pytest.raises(ValueError, match="reference"):
        hypervolume([(1, 60)], (None, 50))


def test_shared_reference():
    rows = [row("a1", "a", 1, 70), row("a2", "a", 4, 90), row("b1", "b", 5, 60), row("b2", "b", None, 10)]
    # largest latency 5 -> 5 * 1.1 = 5.5; lowest top-1 among rows with a latency: 60 (b2 has none)
    ref = shared_reference(rows, "latency_ms")
    assert ref == pytest.approx((5.5, 60))


# --- EDF --------------------------------------------------------------------------------------------------------

def test_edf_plain_and_weighted():
    e, f = edf([3, 1, 2])
    assert list(e) == [1, 2, 3]
    assert list(f) == pytest.approx([1 / 3, 2 / 3, 1])  # fraction with error <= e_i
    # weights follow their errors: sorted errors 1, 2, 3 carry 0.25, 0.25, 0.5 -> 0.25, 0.5, 1.0
    e, f = edf([3, 1, 2], weights=[0.5, 0.25, 0.25])
    assert list(f) == pytest.approx([0.25, 0.5, 1.0])
    with pytest.raises(ValueError, match="weight"):
        edf([1, 2], weights=[1])
    with pytest.raises(ValueError, match="non-empty"):
        edf([])


def test_complexity_weights_and_normalised_edf():
    # bins [1,10) and [10,100]: 1, 2, 5 in the first, 50 in the second; two occupied bins -> 1/2 each,
    # shared by 3 and 1 models: 1/6, 1/6, 1/6, 1/2
    w = complexity_weights([1, 2, 5, 50], [1, 10, 100])
    assert list(w) == pytest.approx([1 / 6, 1 / 6, 1 / 6, 1 / 2])
    # an empty third bin changes nothing; 2000 lies outside the edges -> weight 0
    w2 = complexity_weights([1, 2, 5, 50, 2000], [1, 10, 100, 1000])
    assert list(w2) == pytest.approx([1 / 6, 1 / 6, 1 / 6, 1 / 2, 0])
    assert w2.sum() == pytest.approx(1)
    # errors 10, 20, 30, 40 with those weights: F = 1/6, 2/6, 3/6, 3/6 + 1/2 = 1
    _, f = edf([10, 20, 30, 40], w)
    assert list(f) == pytest.approx([1 / 6, 2 / 6, 3 / 6, 1])
    with pytest.raises(ValueError, match="increasing"):
        complexity_weights([1], [10, 1])
    # geomspace(1, 100, 2 bins) -> 1, 10, 100
    assert list(log_bin_edges([1, 100, 50], n_bins=2)) == pytest.approx([1, 10, 100])


# --- bootstrap --------------------------------------------------------------------------------------------------

def test_bootstrap_reproducible_and_contains_best():
    costs, accs = [1, 2, 3, 4, 10], [60, 70, 65, 80, 90]
    a = bootstrap_best_under_budget(costs, accs, budget=4, n_boot=500, seed=3)
    b = bootstrap_best_under_budget(costs, accs, budget=4, n_boot=500, seed=3)
    assert a == b
    assert a["n"] == 4 and a["best"] == 80  # costs 1..4 are within budget; their best is 80 (90 costs 10)
    # a resample's best never exceeds the sample's best, and 80 is drawn in most resamples -> high == 80
    assert 60 <= a["low"] <= a["best"] == a["high"] == 80


def test_bootstrap_degenerate_cases():
    one = bootstrap_best_under_budget([1], [70], budget=1)
    assert (one["best"], one["low"], one["high"], one["n"]) == (70, 70, 70, 1)
    assert "degenerate" in one["note"]
    none = bootstrap_best_under_budget([5], [70], budget=1)
    assert none["best"] is None and none["low"] is None and none["n"] == 0
    few = bootstrap_best_under_budget([1, 2], [70, 80], budget=2, n_boot=5)  # 5 resamples < 10 needed
    assert few["best"] == 80 and few["low"] is None and few["high"] is None and "resamples" in few["note"]
    with pytest.raises(ValueError, match="one of each"):
        bootstrap_best_under_budget([1, 2], [70], budget=2)


# --- speed-ups --------------------------------------------------------------------------------------------------

SPEED_ROWS = [row("a1", "a", 1, 70), row("a2", "a", 2, 80), row("a3", "a", 4, 90),
              row("b1", "b", 2, 70), row("b2", "b", 3, 75), row("b3", "b", 6, 85)]


def test_speedup_at_equal_accuracy():
    fronts = block_fronts(SPEED_ROWS, "latency_ms")
    # top-1 >= 75: a first gets there at a2 (2 ms), b at b2 (3 ms); 95 is beyond both
    assert speedup_at_equal_accuracy(fronts, 75) == {"a": 2, "b": 3}
    assert speedup_at_equal_accuracy(fronts, 95) == {"a": None, "b": None}


def test_speedup_table_two_blocks():
    table = speedup_table(SPEED_ROWS)
    # bests: a 90, b 85 -> levels: min = 85, median = (85 + 90) / 2 = 87.5
    assert [t["accuracy"] for t in table] == [85, 87.5]
    # at 85: a needs 4 ms, b 6 ms -> a is best, b is 6 / 4 = 1.5x slower, worst / best = 1.5
    t85 = table[0]
    assert t85["best_block"] == "a" and t85["best_cost"] == 4
    assert t85["slowdown"] == pytest.approx({"a": 1.0, "b": 1.5})
    assert t85["worst_over_best"] == pytest.approx(1.5)
    # at 87.5 only a gets there: b has no figure, worst / best among those that reach it = 1
    assert table[1]["costs"] == {"a": 4, "b": None} and table[1]["slowdown"]["b"] is None
    assert table[1]["worst_over_best"] == pytest.approx(1.0)
    # an explicit level 70: a 1 ms, b 2 ms -> b 2x
    assert speedup_table(SPEED_ROWS, levels=[70])[0]["slowdown"] == pytest.approx({"a": 1.0, "b": 2.0})


# --- rank agreement ---------------------------------------------------------------------------------------------

def test_rank_agreement_by_hand():
    # [1,2,3,4] vs [1,3,2,4]: of 6 pairs only (2,3) is discordant -> tau = (5 - 1) / 6 = 2/3;
    # rank differences 0, -1, 1, 0 -> rho = 1 - 6 * 2 / (4 * 15) = 0.8
    r = rank_agreement([1, 2, 3, 4], [1, 3, 2, 4])
    assert r["kendall_tau"] == pytest.approx(2 / 3) and r["spearman"] == pytest.approx(0.8)
    # ties: [1,1,2,3] vs [1,2,2,3]: C = 4, D = 0, one pair tied in x, one in y, n0 = 6 ->
    # tau_b = 4 / sqrt(5 * 5) = 0.8; average ranks [1.5,1.5,3,4] and [1,2.5,2.5,4], centred at 2.5:
    # sum of products 1.5 + 0 + 0 + 2.25 = 3.75, sums of squares 4.5 and 4.5 -> rho = 3.75 / 4.5
    r = rank_agreement([1, 1, 2, 3], [1, 2, 2, 3])
    assert r["kendall_tau"] == pytest.approx(0.8) and r["spearman"] == pytest.approx(3.75 / 4.5)
    assert rank_agreement([1, 1, 1], [1, 2, 3])["kendall_tau"] is None  # one side all tied: undefined
    assert rank_agreement([1], [2])["spearman"] is None
    with pytest.raises(ValueError, match="equal length"):
        rank_agreement([1, 2], [1])


def test_rank_agreement_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    xs = [rng.randint(0, 5) for _ in range(30)]
    ys = [x + rng.randint(-3, 3) for x in xs]
    r = rank_agreement(xs, ys)
    assert r["kendall_tau"] == pytest.approx(stats.kendalltau(xs, ys).statistic)  # scipy's default is tau-b
    assert r["spearman"] == pytest.approx(stats.spearmanr(xs, ys).statistic)


def test_ranking_by_madds_vs_latency():
    rows = [row("a1", "a", 2, 70, madds=10), row("a2", "a", 4, 80, madds=20),
            row("b1", "b", 1, 75, madds=30), row("b2", "b", 1.5, 85, madds=40)]
    r = ranking_by_madds_vs_latency(rows)
    # networks, madds 10,20,30,40 vs latency 2,4,1,1.5: concordant (10,20), (30,40); the other 4 discordant ->
    # tau = (2 - 4) / 6 = -1/3; latency ranks 3,4,1,2, differences -2,-2,2,2 -> rho = 1 - 6 * 16 / 60 = -0.6
    assert r["networks"]["kendall_tau"] == pytest.approx(-1 / 3)
    assert r["networks"]["spearman"] == pytest.approx(-0.6)
    # medians: a 15 MAdds / 3 ms, b 35 MAdds / 1.25 ms -> MAdds say a, latency says b
    med = r["blocks_median"]
    assert med["madds"] == {"a": 15, "b": 35} and med["latency_ms"] == {"a": 3, "b": 1.25}
    assert med["kendall_tau"] == pytest.approx(-1)
    assert [(p["fewer_madds"], p["faster"]) for p in med["misordered"]] == [("a", "b")]
    # common level = min(80, 85) = 80: a needs 20 MAdds / 4 ms, b 40 MAdds / 1.5 ms -> misordered too
    at = r["blocks_at_accuracy"]
    assert at["accuracy"] == 80 and at["madds"] == {"a": 20, "b": 40} and at["latency_ms"] == {"a": 4, "b": 1.5}
    assert [(p["fewer_madds"], p["faster"]) for p in at["misordered"]] == [("a", "b")]
    with pytest.raises(GhostnetsError, match="madds and latency"):
        ranking_by_madds_vs_latency([row("a1", "a", None, 70, madds=10)])


# --- report -----------------------------------------------------------------------------------------------------

def synthetic_rows():
    rows = []
    nets = {"ghost": [(1.0, 70.0, 100, 10), (2.0, 78.0, 200, 20), (3.5, 82.0, 300, 30)],
            "mbconv": [(1.5, 72.0, 90, 12), (2.5, 80.0, 180, 22), (5.0, 84.0, 330, 28)]}
    for block, specs in nets.items():
        for i, (lat, top1, madds, params) in enumerate(specs):
            for batch, scale in ((1, 1.0), (8, 4.0)):
                rows.append(row(f"{block}/{i}", block, lat * scale, top1, madds=madds, params=params, batch=batch))
    return rows


META = {"study": "toy", "design_space": "2 blocks", "training": "none", "machine": "test", "date": "2026-12-02",
        "command": "pytest"}


def test_write_report_writes_every_file(tmp_path):
    written = write_report(synthetic_rows(), tmp_path, title="Toy blocks", meta=META)
    names = {p.name for p in written}
    pngs = {"front_latency_this-cpu_eager_b1.png", "front_latency_this-cpu_eager_b8.png", "front_madds.png",
            "front_params.png", "edf.png"}
    assert names == {"rows.csv", "fronts.csv", "summary.json", "report.md"} | pngs
    assert all((tmp_path / n).stat().st_size > 0 for n in names)
    md = (tmp_path / "report.md").read_text()
    for png in pngs:
        assert f"]({png})" in md
    assert "toy" in md and "pytest" in md
    with open(tmp_path / "rows.csv") as f:
        assert len(list(csv.DictReader(f))) == 12  # 2 blocks x 3 networks x 2 batches
    summary = json.loads((tmp_path / "summary.json").read_text())
    b1 = summary["views"]["latency_this-cpu_eager_b1"]
    assert b1["blocks"]["ghost"]["best_top1"] == 82 and b1["blocks"]["mbconv"]["n"] == 3
    # budget = median of the 6 batch-1 latencies 1, 1.5, 2, 2.5, 3.5, 5 = (2 + 2.5) / 2 = 2.25;
    # within it ghost's best is 78 (2 ms), mbconv's 72 (1.5 ms)
    assert b1["budget"] == pytest.approx(2.25)
    assert b1["blocks"]["ghost"]["bootstrap"]["best"] == 78
    assert b1["blocks"]["mbconv"]["bootstrap"]["best"] == 72
    # common level min(82, 84) = 82: ghost 3.5 ms, mbconv 5 ms (its first >= 82) -> 5 / 3.5 slower
    assert b1["speedups"][0]["slowdown"]["mbconv"] == pytest.approx(5 / 3.5)
    # every network is on its block's front here (cost and top-1 both increase): 2 x 3 per view, 4 views
    with open(tmp_path / "fronts.csv") as f:
        fronts = list(csv.DictReader(f))
    assert len(fronts) == 24 and all(r["on_front"] == "1" for r in fronts)


def test_write_report_small_and_without_latency(tmp_path):
    rows = [row("a/0", "a", None, 70, madds=100, params=10, target=None, runtime=None, batch=None),
            row("a/1", "a", None, 75, madds=200, params=20, target=None, runtime=None, batch=None),
            row("b/0", "b", None, 72, madds=150, params=15, target=None, runtime=None, batch=None),
            row("b/1", "b", None, None, madds=300, params=30, target=None, runtime=None, batch=None)]
    written = write_report(rows, tmp_path, title="No latency", meta={"study": "s"})
    names = {p.name for p in written}
    assert {"front_madds.png", "front_params.png", "edf.png", "report.md"} <= names
    assert not any(n.startswith("front_latency") for n in names)
    assert "No latency was measured" in (tmp_path / "report.md").read_text()
    # a handful with latencies (2 blocks x 2 networks), one latency missing
    small = [row("a/0", "a", 1.0, 70, madds=100), row("a/1", "a", 2.0, 75, madds=200),
             row("b/0", "b", 1.5, 72, madds=150), row("b/1", "b", None, 80, madds=300)]
    out = tmp_path / "small"
    assert (out / "front_latency_this-cpu_eager_b1.png") in write_report(small, out, title="Small", meta={})
    assert not math.isnan(json.loads((out / "summary.json").read_text())["views"]["madds"]["budget"])


def test_write_report_empty_raises(tmp_path):
    with pytest.raises(GhostnetsError, match="no completed trial in study 'toy'"):
        write_report([], tmp_path, title="Empty", meta=META)
    with pytest.raises(GhostnetsError, match="no completed trial"):
        write_report([row("a/0", "a", 1.0, None)], tmp_path, title="Failed", meta=META)

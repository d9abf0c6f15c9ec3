"""The block evaluation's sweep on an Optuna study: a tiny sweep end to end with its report, two worker processes
sharing one study (SQLite and, where PostgreSQL can run, a real server), SIGKILL then resume, a failing trial
recorded with its reason, and bad input refused before any training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ghostnets.cli import main

optuna = pytest.importorskip("optuna")
pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data" / "fashion_mnist_subset.npz"
BLOCKS = "ghost,mbv2"
BAND = "0.2M:2M"


def _space(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text("width: [8, 32]\ndepth: [1, 2]\n")
    return path


def _sweep_args(tmp_path: Path, *extra: str, study: str = "t", samples: int = 2, epochs: int = 1) -> list[str]:
    return ["blocks", "sweep", "--storage", f"sqlite:///{tmp_path}/b.db", "--study", study, "--blocks", BLOCKS,
            "--samples", str(samples), "--madds", BAND, "--epochs", str(epochs), "--space", str(_space(tmp_path)),
            "--data", str(DATA), "--threads", "1", "--workdir", str(tmp_path / "runs"), *extra]


def _trials(tmp_path: Path, study: str = "t"):
    return optuna.load_study(study_name=study, storage=f"sqlite:///{tmp_path}/b.db").get_trials()


def _completed_keys(trials) -> Counter:
    return Counter(t.user_attrs["key"] for t in trials if t.state == optuna.trial.TrialState.COMPLETE)


PLANNED = {f"{b}/{i}" for b in BLOCKS.split(",") for i in range(2)}


def test_tiny_sweep_measure_report(tmp_path, capsys):
    assert main(_sweep_args(tmp_path)) == 0
    trials = _trials(tmp_path)
    assert _completed_keys(trials) == Counter({k: 1 for k in PLANNED})
    for t in trials:  # each value is the run's held-out top-1, the run is where the trial says
        summary = json.loads((Path(t.user_attrs["run_dir"]) / "summary.json").read_text())
        assert t.value == summary["final_top1"] and 0 <= t.value <= 100
    assert main(_sweep_args(tmp_path)) == 0  # nothing left: no trial repeated
    assert len(_trials(tmp_path)) == len(trials)

    storage = ["--storage", f"sqlite:///{tmp_path}/b.db", "--study", "t"]
    assert main(["blocks", "measure", *storage, "--runtimes", "eager", "--runs", "3", "--warmup", "1"]) == 0
    assert main(["blocks", "measure", *storage, "--runtimes", "eager", "--runs", "3"]) == 0  # resumes: skips all
    assert "4 already measured" in capsys.readouterr().out
    out = tmp_path / "report"
    assert main(["blocks", "report", *storage, "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "rows.csv", "fronts.csv", "summary.json", "front_latency_this-cpu_eager_b1.png",
            "front_madds.png", "front_params.png", "edf.png"} <= names
    report = (out / "report.md").read_text()
    assert "ghost" in report and "mbv2" in report and "front_latency_this-cpu_eager_b1.png" in report
    rows = (out / "rows.csv").read_text().splitlines()
    assert len(rows) == 1 + 4  # a header, one row per network (one target, runtime and batch)


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    from ghostnets.blocks_eval import sweep

    real = sweep._train

    def train_or_fail(settings, arch, run_dir, options):
        if run_dir.parts[-2:] == ("ghost", "1"):
            raise RuntimeError("CPU out of memory (simulated)")
        return real(settings, arch, run_dir, options)

    monkeypatch.setattr(sweep, "_train", train_or_fail)
    assert main(_sweep_args(tmp_path)) == 0
    trials = _trials(tmp_path)
    assert set(_completed_keys(trials)) == PLANNED - {"ghost/1"}
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert [t.user_attrs["key"] for t in failed] == ["ghost/1"]
    assert failed[0].user_attrs["fail_reason"] == "RuntimeError: CPU out of memory (simulated)"
    from ghostnets.blocks_eval.study import open_storage

    assert [f["reason"] for f in sweep.failures(open_storage(f"sqlite:///{tmp_path}/b.db"), "t")] == [
        "RuntimeError: CPU out of memory (simulated)"]


def _run_cli(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "ghostnets", *args], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_two_worker_processes_train_each_network_once(tmp_path):
    proc = _run_cli(_sweep_args(tmp_path, "--workers", "2", epochs=2))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    trials = _trials(tmp_path)
    planned = PLANNED
    assert _completed_keys(trials) == Counter({k: 1 for k in planned})
    workers = {t.user_attrs["worker"] for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert len(workers) == 2  # both processes took trials from the one study
    runs = {p.parent.relative_to(tmp_path / "runs").as_posix() for p in (tmp_path / "runs").glob("*/*/summary.json")}
    assert runs == planned


def _claim_until_none(url: str, claimed) -> None:
    from ghostnets.blocks_eval.study import open_storage

    study = optuna.load_study(study_name="race", storage=open_storage(url))
    while (trial_id := study._pop_waiting_trial_id()) is not None:  # what study.optimize claims a trial with
        claimed.put(trial_id)
    claimed.put(None)


def test_sqlite_hands_each_waiting_trial_to_one_worker(tmp_path):
    """SQLite ignores SELECT FOR UPDATE: without the write lock taken at BEGIN, 3 processes claiming 60 enqueued
    trials doubled 7 of them (the flaky two-worker sweep above)."""
    import multiprocessing

    from ghostnets.blocks_eval.study import open_storage

    url = f"sqlite:///{tmp_path}/race.db"
    study = optuna.create_study(study_name="race", storage=open_storage(url))
    for i in range(60):
        study.enqueue_trial({}, user_attrs={"key": f"n/{i}"})
    context = multiprocessing.get_context("fork")
    claimed = context.Queue()
    workers = [context.Process(target=_claim_until_none, args=(url, claimed)) for _ in range(3)]
    for w in workers:
        w.start()
    ids, finished = [], 0
    while finished < len(workers):
        trial_id = claimed.get(timeout=120)
        finished += trial_id is None
        ids += [] if trial_id is None else [trial_id]
    for w in workers:
        w.join()
    assert sorted(ids) == sorted(t._trial_id for t in study.get_trials())


def test_sigkill_mid_sweep_then_resume(tmp_path):
    args = _sweep_args(tmp_path, "--heartbeat", "1", epochs=2)
    proc = _run_cli(args)
    deadline = time.monotonic() + 300
    checkpoint = None
    while time.monotonic() < deadline and checkpoint is None:  # kill once a trial is half-way (epoch 1 saved)
        found = [p for p in (tmp_path / "runs").glob("*/*/checkpoint.pth") if not (p.parent / "summary.json").exists()]
        checkpoint = found[0] if found else None
        time.sleep(0.05)
    assert checkpoint is not None, "no trial reached its first checkpoint"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    killed = checkpoint.parent.relative_to(tmp_path / "runs").as_posix()

    assert main(args) == 0  # waits out the dead worker's heartbeat, retries its trial, finishes the rest
    trials = _trials(tmp_path)
    assert _completed_keys(trials) == Counter({k: 1 for k in PLANNED})
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert [t.user_attrs["key"] for t in failed] == [killed]
    retry = [t for t in trials if t.user_attrs.get("retry_of") == failed[0].number]
    assert len(retry) == 1 and retry[0].state == optuna.trial.TrialState.COMPLETE
    epochs = [json.loads(line)["epoch"] for line in (checkpoint.parent / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1]  # resumed from the checkpoint: the first epoch was not trained again


def test_bad_input_is_refused_before_any_training(tmp_path, capsys):
    def refused(args, *expected):
        assert main(args) == 2
        err = capsys.readouterr().err
        for text in expected:
            assert text in err, err
        assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*/*"))

    bad_blocks = _sweep_args(tmp_path)
    bad_blocks[bad_blocks.index(BLOCKS)] = "ghost,mbv22"
    refused(bad_blocks, "unknown block 'mbv22'", "Did you mean mbv2")
    far = _sweep_args(tmp_path)
    far[far.index(BAND)] = "500M:900M"
    refused(far, "no network of these blocks can land in the MAdds band 500M:900M", "ghost reaches")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    url = _sweep_args(tmp_path)
    url[url.index(f"sqlite:///{tmp_path}/b.db")] = f"sqlite:///{blocked}/b.db"
    refused(url, "cannot make its folder")
    url[url.index(f"sqlite:///{blocked}/b.db")] = "runs/blocks.db"
    refused(url, "is not a database URL")
    url[url.index("runs/blocks.db")] = "postgresql+psycopg2://nobody@127.0.0.1:9/none"
    refused(url, "cannot open the storage")

    # a study made with one design space refuses another
    from ghostnets.blocks_eval.space import DesignSpace, parse_band
    from ghostnets.blocks_eval.study import SweepSettings, create_or_load, open_storage

    storage = open_storage(f"sqlite:///{tmp_path}/b.db")
    create_or_load(storage, "t", SweepSettings(space=DesignSpace(width=(8, 64), depth=(1, 2)), blocks=("ghost",),
                                               samples=2, band=parse_band(BAND), epochs=1, data=str(DATA)))
    refused(_sweep_args(tmp_path), "study 't' was created with another design space", "differs in width")
    refused(["blocks", "report", "--storage", f"sqlite:///{tmp_path}/b.db", "--study", "nope", "--out",
             str(tmp_path / "r")], "no study 'nope'", "it holds t")


def test_two_workers_on_a_postgresql_server(tmp_path):
    from pg_server import postgres_server, postgres_unavailable_reason

    reason = postgres_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with postgres_server(tmp_path) as url:
        args = _sweep_args(tmp_path, "--workers", "2")
        args[args.index(f"sqlite:///{tmp_path}/b.db")] = url
        proc = _run_cli(args)
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out
        trials = optuna.load_study(study_name="t", storage=url).get_trials()
        assert _completed_keys(trials) == Counter({k: 1 for k in PLANNED})


def test_nsga2_searches_each_blocks_front(tmp_path):
    """--sampler nsga2: one multi-objective study per block (top-1 up, this machine's eager latency down), each with
    the samples asked for, and the report reads them like a random sweep."""
    assert main(_sweep_args(tmp_path, "--sampler", "nsga2")) == 0
    storage = f"sqlite:///{tmp_path}/b.db"
    for block in BLOCKS.split(","):
        study = optuna.load_study(study_name=f"t.{block}", storage=storage)
        done = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(done) == 2 and [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
        for t in done:
            top1, latency = t.values
            assert t.user_attrs["block"] == block and 0 <= top1 <= 100 and latency > 0
            assert 0.2e6 <= t.user_attrs["madds"] <= 2e6  # in the band
    out = tmp_path / "report"
    assert main(["blocks", "report", "--storage", storage, "--study", "t", "--out", str(out)]) == 0
    assert (out / "report.md").exists()

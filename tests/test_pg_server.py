"""tests/pg_server.py: a throw-away PostgreSQL server that optuna's RDB storage can use, stopped and removed after."""

from __future__ import annotations

import re
import socket

import pytest

import pg_server
from pg_server import postgres_server, postgres_unavailable_reason


@pytest.fixture
def pg_reason() -> None:
    reason = postgres_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


def test_an_optuna_study_on_the_server_is_read_back_and_the_server_is_gone_after(pg_reason, tmp_path):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    details: dict = {}
    with postgres_server(tmp_path, details=details) as url:
        match = re.fullmatch(r"postgresql\+psycopg2://ghostnets@127\.0\.0\.1:(\d+)/ghostnets_test", url)
        assert match and int(match[1]) == details["port"]
        assert (details["dir"] / "data" / "PG_VERSION").exists() and (details["dir"] / f".s.PGSQL.{details['port']}"
                                                                       ).exists()  # the unix socket in the folder
        study = optuna.create_study(storage=url, study_name="t")
        # a trial with x = 3 and objective x ** 2 = 9, written through the first storage
        study.add_trial(optuna.trial.create_trial(params={"x": 3.0},
                                                  distributions={"x": optuna.distributions.FloatDistribution(0, 10)},
                                                  value=9.0))
        loaded = optuna.load_study(study_name="t", storage=url)  # a second storage: a new engine and connection
        assert [(t.params, t.value, t.state) for t in loaded.trials] == [({"x": 3.0}, 9.0,
                                                                          optuna.trial.TrialState.COMPLETE)]
        assert loaded.best_value == 9.0
        port, folder = details["port"], details["dir"]
    with socket.socket() as s:  # stopped: nothing listens on its port
        assert s.connect_ex(("127.0.0.1", port)) != 0
    assert not folder.exists()  # and removed


def test_a_missing_folder_is_refused(pg_reason, tmp_path):
    with pytest.raises(ValueError, match="is not a folder"), postgres_server(tmp_path / "nope"):
        pass


def test_an_error_in_the_block_still_stops_and_removes_the_server(pg_reason, tmp_path):
    details: dict = {}
    with pytest.raises(KeyError, match="boom"), postgres_server(tmp_path, details=details):
        raise KeyError("boom")
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", details["port"])) != 0
    assert not details["dir"].exists()


def test_the_reason_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(pg_server, "_binary", lambda name: None if name == "pg_ctl" else "/bin/true")
    postgres_unavailable_reason.cache_clear()
    try:
        reason = postgres_unavailable_reason()
    finally:
        postgres_unavailable_reason.cache_clear()
    assert reason is not None and reason.startswith("PostgreSQL's pg_ctl not found") and "apt-get install" in reason

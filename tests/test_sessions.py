"""runtime.sessions: on_own_thread, what NNCF's own OpenVINO Cores run under (the segfault it prevents is described in
docs/reference.md, 'OpenVINO Cores and signal stacks'), the children forked from it, and the cap below AMX."""

from __future__ import annotations

import gc
import multiprocessing
import signal
import threading
import time
import weakref

import pytest

import ghostnets.runtime.sessions as sessions
from ghostnets.runtime.sessions import on_own_thread


class _Cycle:
    """An object only the cycle collector frees, which records the thread it was freed on."""

    def __init__(self, freed_on: list) -> None:
        self.me = self
        weakref.finalize(self, lambda: freed_on.append(threading.get_ident()))


def test_runs_elsewhere_with_async_signals_blocked_and_returns_the_result():
    def probe(a, b=0):
        return threading.get_ident(), signal.pthread_sigmask(signal.SIG_BLOCK, []), a + b

    ident, blocked, total = on_own_thread(probe, 2, b=3)
    assert ident != threading.get_ident() and total == 5
    assert {signal.SIGCHLD, signal.SIGINT, signal.SIGALRM, signal.SIGTERM} <= blocked
    assert not {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE} & blocked  # faults still reach their handlers
    assert signal.SIGCHLD not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the caller's mask is untouched


@pytest.mark.parametrize("fails", [False, True])
def test_what_the_call_made_is_freed_on_its_thread(fails):
    """The cycle lives in the call's frame; with an exception that frame is kept by the traceback unless cleared."""
    gc.collect()
    freed_on, ran_on = [], []

    def work():
        ran_on.append(threading.get_ident())
        cycle = _Cycle(freed_on)  # noqa: F841 - held by the frame
        if fails:
            raise KeyError("no such layer")

    if fails:
        with pytest.raises(KeyError, match="no such layer"):
            on_own_thread(work)
    else:
        assert on_own_thread(work) is None
    assert freed_on == ran_on  # freed, on the call's thread, before on_own_thread returned


def _sleep() -> None:
    time.sleep(60)


def test_a_process_forked_from_the_thread_can_be_terminated():
    """OpenVINO's telemetry forks a sender from a thread pool and ends it with SIGTERM after 3 s; forked from a thread
    of on_own_thread (or from a thread it started), that child must not inherit the blocked SIGTERM."""

    def fork_from_a_started_thread():
        started = {}

        def start():
            started["child"] = multiprocessing.get_context("fork").Process(target=_sleep, daemon=True)
            started["child"].start()

        thread = threading.Thread(target=start)  # inherits the blocked mask, as a thread pool's workers do
        thread.start()
        thread.join()
        return started["child"]

    child = on_own_thread(fork_from_a_started_thread)
    child.terminate()
    child.join(20)
    assert child.exitcode == -signal.SIGTERM


@pytest.mark.parametrize(("flags", "environment", "expected"), [
    ({"avx512_vnni", "amx_tile", "amx_int8"}, {}, "AVX512_CORE_FP16"),
    ({"avx512_vnni", "amx_tile", "amx_int8"}, {"ONEDNN_MAX_CPU_ISA": "ALL"}, "ALL"),
    ({"avx512_vnni", "amx_tile", "amx_int8"}, {"DNNL_MAX_CPU_ISA": "AVX2"}, None),
    ({"avx512_vnni", "avx2"}, {}, None),
    (set(), {}, None),
])
def test_openvino_is_capped_below_amx_only_on_amx_cpus_and_only_when_the_environment_is_silent(
        flags, environment, expected, monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sessions, "cpu_flags", lambda: flags)
    sessions._avoid_amx_kernels()
    assert sessions.os.environ.get("ONEDNN_MAX_CPU_ISA") == expected

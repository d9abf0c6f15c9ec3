"""runtime.sessions.on_own_thread: what NNCF's own OpenVINO Cores run under (the segfault it prevents is described in
docs/reference.md, 'OpenVINO Cores and signal stacks')."""

from __future__ import annotations

import gc
import signal
import threading
import weakref

import pytest

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

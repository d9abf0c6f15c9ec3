"""Shared test helpers: a fixed seed, a small thread pool and BatchNorm layers that are not the identity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

SEED = 0

torch.set_num_threads(2)


@torch.no_grad()
def randomize_bn(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Give every BatchNorm a non-trivial affine transform and running statistics; returns ``model``.

    A freshly built BatchNorm (weight 1, bias 0, mean 0, var 1) is almost the identity in eval mode, which hides
    folding bugs (a swapped scale/shift, a forgotten mean or eps). Values are drawn from ``generator`` (seeded by the
    caller) or a fixed-seed one, so the result is reproducible.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(SEED)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            if m.weight is not None:
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)  # [0.5, 1.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)  # [0.5, 2.0)
    return model


@pytest.fixture(scope="session", autouse=True)
def seed() -> int:
    """Seed every RNG once for the session (tests that need independence from order reseed with this value)."""
    torch.manual_seed(SEED)
    return SEED


@pytest.fixture(autouse=True)
def _reseed(seed: int) -> None:
    """Reseed and reset torch's thread count before each test, so neither a test's random inputs nor its speed
    depend on which tests ran before it (bench and INT8 tests set 1 thread for their runtimes)."""
    torch.manual_seed(seed)
    torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _default_sigchld():
    """Put SIGCHLD back to its default after each test.

    The first multi-worker DataLoader of a process installs torch's SIGCHLD handler for good
    (``torch.utils.data._utils.signal_handling._set_SIGCHLD_handler``), a Python-level handler that CPython runs on
    the thread's alternate signal stack (SA_ONSTACK). In the whole suite in one process, a later test killed its
    ``ghostnets train`` subprocess and the SIGCHLD that followed arrived as a SIGSEGV while pytest sat in
    ``waitpid`` (gdb: thread 1 "received signal SIGSEGV" in ``__GI___wait4``; exit 139; faulthandler silent), i.e.
    the kernel could not deliver the handler frame, after the native runtimes (OpenVINO's TBB, onnxruntime, inductor)
    had run in the same process. Without the leftover handler there is no frame to deliver and the suite passes in
    one process. A user's training run installs it too, but does not then kill children of its own.
    """
    yield
    import signal

    if signal.getsignal(signal.SIGCHLD) not in (signal.SIG_DFL, None):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)

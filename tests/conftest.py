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

"""Numerical proof that a deploy form computes what its training form computes."""

from __future__ import annotations

import torch
from torch import nn

from ..record import in_chans_of


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial affine parameters and running statistics (in place; returns ``model``).

    A freshly initialised BN is the identity, under which a wrong fold still looks right; this makes it show.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.6 - 0.3)
                m.running_mean.copy_(torch.rand(n, generator=gen) * 0.6 - 0.3)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
    return model


def max_output_difference(
    reference: nn.Module, candidate: nn.Module, input_size: tuple[int, int] = (224, 224), batch: int = 2,
    in_chans: int | None = None, seed: int = 0,
) -> tuple[float, float]:
    """``(max |reference(x) - candidate(x)|, max |reference(x)|)`` on random ``x``, both models in eval mode."""
    in_chans = in_chans if in_chans is not None else in_chans_of(reference)
    x = torch.randn(batch, in_chans, *input_size, generator=torch.Generator().manual_seed(seed))
    reference.eval()
    candidate.eval()
    with torch.no_grad():
        a, b = reference(x), candidate(x)
    if isinstance(a, (list, tuple)):
        return max((p - q).abs().max().item() for p, q in zip(a, b)), max(p.abs().max().item() for p in a)
    return (a - b).abs().max().item(), a.abs().max().item()


def is_equivalent(difference: float, scale: float, rtol: float = 1e-4) -> bool:
    """The project's float32 criterion: max |Δ| <= rtol * max(1, max |output|)."""
    return difference <= rtol * max(1.0, scale)

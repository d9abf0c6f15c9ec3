"""Precise BN (pycls; RegNet's design-space studies): the running statistics become the plain average over the
training images seen, whatever the layer's momentum; the momentum is restored."""

from __future__ import annotations

import torch
from torch import nn

from ghostnets.train.distributed import Distributed
from ghostnets.train.engine import precise_bn


def test_running_statistics_are_the_average_over_the_images():
    bn = nn.BatchNorm2d(3, momentum=0.01).eval()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 3, 5, 5, generator=g) * (i + 1) + i, None, 0) for i in range(3)]
    seen = precise_bn(bn, batches, 8, Distributed())  # stops once 8 images are seen: the first two batches
    assert seen == 8 and bn.momentum == 0.01 and not bn.training
    used = torch.cat([b for b, _, _ in batches[:2]])
    # equal batch sizes: the cumulative average of the batch means is the mean over all 8 images
    torch.testing.assert_close(bn.running_mean, used.mean((0, 2, 3)))
    unbiased = [b.var((0, 2, 3), unbiased=True) for b, _, _ in batches[:2]]  # BN keeps each batch's unbiased var
    torch.testing.assert_close(bn.running_var, sum(unbiased) / 2)


def test_evaluation_builds_no_autograd_graph():
    """Evaluation without autograd: a graph kept every activation of a 256-image batch alive (24 GiB for GhostNetV2 at
    224 px, killed by the kernel) and cannot change the figures."""
    from ghostnets.train.engine import evaluate

    seen = []

    class Probe(nn.Linear):
        def forward(self, x):
            out = super().forward(x)
            seen.append((torch.is_grad_enabled(), out.requires_grad))
            return out

    model = Probe(4, 3)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    result = evaluate(model, [(x, y, 0)], Distributed())
    assert seen == [(False, False)]
    right = (model(x).argmax(1) == y).sum().item()
    assert result["images"] == 6 and abs(result["top1"] - 100 * right / 6) < 1e-9

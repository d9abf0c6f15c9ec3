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

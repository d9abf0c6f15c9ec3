"""Layer normalization over the channels of an (N, C, H, W) map (Ba, Kiros, Hinton 2016, arXiv 1607.06450), as
ConvNeXt and EdgeNeXt use it between convolutions (the official EdgeNeXt ``LayerNorm(data_format="channels_first")``,
timm's ``LayerNorm2d``; docs/reference.md "EdgeNeXt").

A LayerNorm normalises with each position's own statistics, so unlike BatchNorm it cannot be folded into a
neighbouring conv: it stays in every deploy form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """``nn.LayerNorm`` over dim 1 of an (N, C, H, W) tensor; parameters ``weight``/``bias`` of shape (C,)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)

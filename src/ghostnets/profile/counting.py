"""Parameter and multiply-add counts in the papers' convention.

MAdds = multiply-accumulates of convolutions and linear layers only (no BN, activations, pooling or element-wise
ops). ``torch.utils.flop_counter`` counts 2 FLOPs per multiply-accumulate for exactly those ops, so MAdds = FLOPs / 2.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..layers.deploy_conv import plain_convolutions


def count_params(model: nn.Module) -> int:
    """Number of parameters (BatchNorm running statistics are buffers and do not count)."""
    return sum(p.numel() for p in model.parameters())


def count_madds(model: nn.Module, input_size: tuple[int, int] = (224, 224), in_chans: int | None = None) -> int:
    """Multiply-adds of one image of ``input_size`` (H, W) through ``model`` in eval mode."""
    in_chans = in_chans if in_chans is not None else getattr(model, "in_chans", 3)
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        x = torch.zeros(1, in_chans, *input_size, device=param.device if param is not None else "cpu")
        with torch.no_grad(), plain_convolutions(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2

"""Parameter and multiply-add counts in the papers' convention.

MAdds = multiply-accumulates of convolutions and linear layers only (no BN, activations, pooling or element-wise
ops). ``torch.utils.flop_counter`` counts 2 FLOPs per multiply-accumulate for exactly those ops, so MAdds = FLOPs / 2.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of parameters (BatchNorm running statistics are buffers and do not count)."""
    return sum(p.numel() for p in model.parameters())


def count_madds(
    model: nn.Module, input_size: int | tuple[int, int] = (224, 224), in_chans: int | None = None
) -> int:
    """Multiply-adds of one image of ``input_size`` (H, W, or one side for a square) through ``model`` in eval mode."""
    in_chans = in_chans if in_chans is not None else getattr(model, "in_chans", 3)
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        x = torch.zeros(1, in_chans, *size, device=param.device if param is not None else "cpu",
                        dtype=param.dtype if param is not None else torch.float32)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2

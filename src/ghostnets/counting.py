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


def madds_input_size(model: nn.Module, input_size: int | tuple[int, int] | None = None) -> tuple[int, int]:
    """Where to count a model's MAdds: ``input_size`` (one side or H, W), else the model's ``default_input_size``
    (32x32 for the CIFAR models), else 224x224, the ImageNet cards' size."""
    if input_size is not None:
        return (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    default = getattr(model, "default_input_size", None)
    return tuple(default) if default else (224, 224)


def conv_output_sizes(model: nn.Module, convs: dict[str, nn.Module], input_size: tuple[int, int],
                      in_chans: int) -> dict[str, tuple[int, int]]:
    """Output H x W of each of ``convs`` (name -> module of ``model``) for one zero image of ``input_size``."""
    sizes: dict[str, tuple[int, int]] = {}

    def record(name: str):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:  # returns None: the output is kept
            sizes.setdefault(name, tuple(out.shape[-2:]))
        return hook

    hooks = [m.register_forward_hook(record(name)) for name, m in convs.items()]
    param = next(model.parameters())
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, in_chans, *input_size, dtype=param.dtype, device=param.device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return sizes


def conv_madds(conv: nn.Conv2d, hw: tuple[int, int], out_chs: int | None = None, in_chs: int | None = None) -> int:
    """Multiply-adds of ``conv`` with output ``hw`` (optionally other channel counts): H W C_out C_in/g k_h k_w."""
    out_chs = conv.out_channels if out_chs is None else out_chs
    in_chs = conv.in_channels if in_chs is None else in_chs
    return hw[0] * hw[1] * out_chs * (in_chs // conv.groups) * conv.kernel_size[0] * conv.kernel_size[1]

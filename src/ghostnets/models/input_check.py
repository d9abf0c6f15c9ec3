"""Input validation shared by every ghostnets model: fail before any convolution runs, with the expected shape."""

from __future__ import annotations

import torch

from ..errors import InputShapeError
from ..layers.graph_capture import capturing_graph

MIN_INPUT_SIZE = 32


def check_image_batch(x: object, in_chans: int, min_size: int = MIN_INPUT_SIZE) -> None:
    """Raise :class:`InputShapeError` unless ``x`` is a float (N, in_chans, H, W) tensor with H, W >= ``min_size``."""
    if capturing_graph():
        return
    expected = f"a floating-point tensor of shape (N, {in_chans}, H, W) with H, W >= {min_size}"
    if not isinstance(x, torch.Tensor):
        raise InputShapeError(f"expected {expected}, got {type(x).__name__}")
    if x.dim() != 4:
        hint = " (add a batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""
        raise InputShapeError(f"expected {expected}, got a {x.dim()}-D tensor of shape {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise InputShapeError(
            f"expected {expected}, got dtype {x.dtype}; convert images with x.float() / 255 and normalise them"
        )
    if x.shape[1] != in_chans:
        raise InputShapeError(
            f"expected {expected}, got {x.shape[1]} channels (shape {tuple(x.shape)}); build the model with "
            f"in_chans={x.shape[1]} or convert the images"
        )
    if x.shape[-2] < min_size or x.shape[-1] < min_size:
        raise InputShapeError(
            f"expected {expected}, got {x.shape[-2]}x{x.shape[-1]}; resize the images to at least {min_size} px"
        )


def prepare_input(x: torch.Tensor, in_chans: int, channels_last: bool, weight: torch.Tensor) -> torch.Tensor:
    """Validate ``x`` (see :func:`check_image_batch`) against the model's first ``weight`` (dtype, device) and give
    it the memory format the model runs in."""
    check_image_batch(x, in_chans)
    # meta tensors (shape-only counting) have no autocast state to ask
    if not capturing_graph() and x.device.type != "meta" and not torch.is_autocast_enabled(x.device.type):
        if x.dtype != weight.dtype:
            raise InputShapeError(f"the input is {x.dtype} but the model's weights are {weight.dtype}: convert one "
                                  f"(x.to({weight.dtype}) or model.to({x.dtype})), or run under torch.autocast")
        if x.device != weight.device:
            raise InputShapeError(f"the input is on {x.device} but the model is on {weight.device}: move one "
                                  f"(x.to('{weight.device}') or model.to('{x.device}'))")
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x

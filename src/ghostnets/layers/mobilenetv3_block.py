"""The MobileNetV3 bottleneck (Howard et al., "Searching for MobileNetV3", ICCV 2019, arXiv 1905.02244, §5.3 and
Fig. 4) in torchvision's layout, so torchvision's weights load as they are (docs/reference.md §15).

``block = [expand 1x1 -> BN -> act] (skipped when expanded == in) -> depthwise kxk (stride) -> BN -> act ->
[SE] -> project 1x1 -> BN`` (linear), ``+ x`` when stride 1 and in == out. ``act`` is ReLU or h-swish per layer.
The SE is MobileNetV3's own (torchvision's ``SqueezeExcitation``): avg pool -> ``fc1`` (1x1 conv, bias) -> ReLU ->
``fc2`` (1x1 conv, bias) -> hard-sigmoid, squeezing to ``make_divisible(expanded // 4, 8)``. BatchNorm as
torchvision's: ``eps=0.001, momentum=0.01``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .block_registry import mid_channels, register_block
from .channels import make_divisible
from .conv_bn_act import ActFactory, ConvSequence, activation, can_update_in_place, is_identity
from .deploy_conv import DeployConv2d
from .drop_path import DropPath

NormFactory = Callable[[int], nn.Module]
MBV3_NORM: NormFactory = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)  # torchvision's MobileNetV3 norm
DEFAULT_EXPANSION = 4.0  # MobileNetV3-Large's table runs at 1x-6x; 4 is its first expanding block (16 -> 64)


def conv_norm_act(in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, *, groups: int = 1,
                  act_layer: ActFactory | None = None, norm_layer: NormFactory = MBV3_NORM,
                  deploy: bool = False) -> ConvSequence:
    """torchvision's ``Conv2dNormActivation``: ``[conv (no bias), norm, act]`` (``[conv, norm]`` without ``act``);
    deploy form ``[DeployConv2d (bias), Identity, act]`` with the same indices."""
    geometry = dict(stride=stride, padding=(kernel_size - 1) // 2, groups=groups)
    if deploy:
        layers = [DeployConv2d(in_chs, out_chs, kernel_size, bias=True, **geometry), nn.Identity()]
    else:
        layers = [nn.Conv2d(in_chs, out_chs, kernel_size, bias=False, **geometry), norm_layer(out_chs)]
    if act_layer is not None:
        layers.append(activation(act_layer))
    seq = ConvSequence(*layers)
    return seq.fuse_relus() if deploy else seq


class MobileNetV3SE(nn.Module):
    """MobileNetV3's squeeze-and-excite (§5.3; torchvision's ``SqueezeExcitation`` with a hard-sigmoid gate):
    ``x * hardsigmoid(fc2(relu(fc1(avgpool(x)))))``."""

    def __init__(self, channels: int, squeeze_chs: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze_chs, 1)
        self.fc2 = nn.Conv2d(squeeze_chs, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * F.hardsigmoid(gate)  # not in place: x may be the caller's tensor


def se_channels(expanded: int, se_ratio: float = 0.25) -> int:
    """The SE's squeeze width: torchvision's ``_make_divisible(expanded // 4, 8)``, generalised to ``se_ratio``."""
    return make_divisible(int(expanded * se_ratio), 8)


class MobileNetV3Block(nn.Module):
    """MobileNetV3's inverted residual bottleneck: ``block.{0..}`` as torchvision's ``InvertedResidual``.

    ``deploy=True``: built with its BatchNorms folded (what ``fuse()`` leaves), so deploy state dicts load.
    """

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, *,
                 se_ratio: float = 0.0, act_layer: ActFactory = nn.ReLU, norm_layer: NormFactory | None = None,
                 drop_path: float = 0.0, deploy: bool = False) -> None:
        super().__init__()
        check_geometry(in_chs, mid_chs, out_chs, kernel_size, stride, se_ratio)
        norm_layer = MBV3_NORM if norm_layer is None else norm_layer
        if deploy and not isinstance(norm_layer(1), nn.BatchNorm2d):
            raise ValueError("deploy=True folds BatchNorm2d into the convs; a block with another norm_layer has no "
                             "folded form: build it with deploy=False")
        unit = partial(conv_norm_act, norm_layer=norm_layer, deploy=deploy)
        layers: list[nn.Module] = []
        if mid_chs != in_chs:
            layers.append(unit(in_chs, mid_chs, 1, act_layer=act_layer))
        layers.append(unit(mid_chs, mid_chs, kernel_size, stride, groups=mid_chs, act_layer=act_layer))
        if se_ratio > 0:
            layers.append(MobileNetV3SE(mid_chs, se_channels(mid_chs, se_ratio)))
        layers.append(unit(mid_chs, out_chs, 1))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and in_chs == out_chs
        self.drop_path = DropPath(drop_path) if drop_path and self.use_res_connect else nn.Identity()
        self.out_channels = out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if not self.use_res_connect:
            return out
        if not is_identity(self.drop_path):
            out = self.drop_path(out)
        return out.add_(x) if can_update_in_place(out) else out + x

    def fuse(self) -> MobileNetV3Block:
        """Its ``ConvSequence`` units fold their own BatchNorms in the walk; the SE holds none."""
        for unit in self.block:
            if isinstance(unit, ConvSequence):
                unit.fuse()
        return self


def check_geometry(in_chs: int, mid_chs: int, out_chs: int, kernel_size: int, stride: int, se_ratio: float) -> None:
    """Refuse what MobileNetV3's bottleneck cannot take, naming the rule broken."""
    if min(in_chs, mid_chs, out_chs) < 1:
        raise ValueError(f"MobileNetV3 block: channels must be >= 1, got in={in_chs}, mid={mid_chs}, out={out_chs}")
    if stride not in (1, 2):
        raise ValueError(f"MobileNetV3 block: stride must be 1 or 2 (torchvision's 'illegal stride value'), got "
                         f"{stride}")
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"MobileNetV3 block: the depthwise kernel must be odd (3 or 5 in the paper) to keep the "
                         f"'same' padding, got kernel_size={kernel_size}")
    if not 0.0 <= se_ratio <= 1.0:
        raise ValueError(f"MobileNetV3 block: se_ratio must be in [0, 1] (0: no SE; the paper's 0.25), got {se_ratio}")


@register_block("mbv3", honours=("kernel_size", "expansion", "mid_chs", "se_ratio", "act_layer", "norm_layer"),
                paper="Howard et al., Searching for MobileNetV3, ICCV 2019", arxiv="1905.02244",
                summary="inverted residual: [1x1 expand], dw kxk (stride), [SE, hard-sigmoid], linear 1x1, + x")
def mbv3_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3, expansion: float | None = None,
               mid_chs: int | None = None, se_ratio: float = 0.0, act_layer: ActFactory = nn.ReLU,
               norm_layer: NormFactory | None = None) -> nn.Module:
    mid = mid_channels(in_chs, expansion, mid_chs, DEFAULT_EXPANSION, divisor=8)  # torchvision rounds to 8
    return MobileNetV3Block(in_chs, mid, out_chs, kernel_size, stride, se_ratio=se_ratio, act_layer=act_layer,
                            norm_layer=norm_layer)

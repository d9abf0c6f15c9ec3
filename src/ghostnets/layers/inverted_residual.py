"""The inverted residual with linear bottleneck of MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and
Linear Bottlenecks", CVPR 2018, arXiv 1801.04381, Table 1 / Figure 3b), in torchvision's layout so torchvision's
weights load as they are (docs/reference.md §14).

1x1 expansion conv -> BN -> ReLU6 (left out at expansion 1), depthwise kxk conv (the stride) -> BN -> ReLU6, linear
1x1 projection conv -> BN; the input is added back when the stride is 1 and the widths agree.

Keys (torchvision's ``InvertedResidual``): ``conv.0.{0,1}`` expansion, ``conv.1.{0,1}`` depthwise, ``conv.2.weight``
projection, ``conv.3.*`` its BN; at expansion 1: ``conv.0.{0,1}`` depthwise, ``conv.1.weight``, ``conv.2.*``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .block_registry import register_block
from .conv_bn_act import ActFactory, ConvSequence, activation, can_update_in_place, conv_norm, is_identity
from .drop_path import DropPath

DEFAULT_EXPANSION = 6  # the paper's t for every block but the first (Table 2)


def _conv_norm(in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, *, groups: int = 1,
               norm_layer: Callable[[int], nn.Module] | None = None, deploy: bool = False) -> list[nn.Module]:
    """``[conv, norm]``: BatchNorm (foldable, so the deploy form exists) or the caller's ``norm_layer``."""
    if norm_layer is None or norm_layer is nn.BatchNorm2d:
        return conv_norm(in_chs, out_chs, kernel_size, stride, groups=groups, deploy=deploy)
    if deploy:
        raise ValueError(f"deploy=True builds the BatchNorms folded; a block with norm_layer={norm_layer!r} has no "
                         "deploy form: build it in training form")
    conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
    return [conv, norm_layer(out_chs)]


def hidden_width(in_chs: int, expansion: float | None, mid_chs: int | None) -> int:
    """MobileNetV2's hidden width: ``mid_chs``, else ``round(in_chs * expansion)`` (torchvision's rule)."""
    if mid_chs is not None:
        return int(mid_chs)
    return int(round(in_chs * (DEFAULT_EXPANSION if expansion is None else expansion)))


class InvertedResidual(nn.Module):
    """MobileNetV2's block (arXiv 1801.04381, Figure 3b) with torchvision's attribute names (``conv``,
    ``use_res_connect``, ``out_channels``, ``stride``).

    ``deploy=True``: built with every BatchNorm folded, as ``fuse()`` leaves it (``nn.Identity`` in the norm slots).
    """

    def __init__(
        self, in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3, expansion: float | None = None,
        mid_chs: int | None = None, act_layer: ActFactory = nn.ReLU6,
        norm_layer: Callable[[int], nn.Module] | None = None, drop_path: float = 0.0, deploy: bool = False,
    ) -> None:
        super().__init__()
        if expansion is not None and mid_chs is not None:
            raise ValueError("give expansion or mid_chs, not both")
        hidden = hidden_width(in_chs, expansion, mid_chs)
        problems = []
        if stride not in (1, 2):
            problems.append(f"stride must be 1 or 2 (MobileNetV2's blocks), got {stride}")
        if not (isinstance(kernel_size, int) and kernel_size >= 1 and kernel_size % 2 == 1):
            problems.append(f"kernel_size must be an odd integer >= 1 (same padding), got {kernel_size!r}")
        if min(in_chs, out_chs, hidden) < 1:
            problems.append(f"in_chs, out_chs and the hidden width must be >= 1, got {in_chs}, {out_chs}, {hidden} "
                            f"(expansion={expansion}, mid_chs={mid_chs})")
        if problems:
            raise ValueError("InvertedResidual: " + "; ".join(problems))
        self.stride, self.out_channels = stride, out_chs
        self.use_res_connect = stride == 1 and in_chs == out_chs
        layers: list[nn.Module] = []

        def unit(i: int, o: int, k: int, s: int = 1, g: int = 1) -> ConvSequence:
            return ConvSequence(*_conv_norm(i, o, k, s, groups=g, norm_layer=norm_layer, deploy=deploy),
                                activation(act_layer)).fuse_relus()

        if hidden != in_chs:  # torchvision: expand_ratio != 1
            layers.append(unit(in_chs, hidden, 1))
        layers.append(unit(hidden, hidden, kernel_size, stride, hidden))
        layers.extend(_conv_norm(hidden, out_chs, 1, norm_layer=norm_layer, deploy=deploy))  # linear bottleneck
        self.conv = ConvSequence(*layers)
        self.drop_path = DropPath(drop_path) if drop_path and self.use_res_connect else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if not self.use_res_connect:
            return out
        if not is_identity(self.drop_path):
            out = self.drop_path(out)
        return out.add_(x) if can_update_in_place(out) else out + x

    def fuse(self) -> InvertedResidual:
        """Fold the projection's BatchNorm (the walk has folded the expansion's and the depthwise conv's)."""
        self.conv.fuse()
        return self


@register_block("mbv2", honours=("kernel_size", "expansion", "mid_chs", "act_layer", "norm_layer"),
                paper="Sandler et al., MobileNetV2, CVPR 2018", arxiv="1801.04381",
                summary="inverted residual: 1x1 expand + ReLU6, depthwise kxk (stride) + ReLU6, linear 1x1 project, "
                        "+ identity at stride 1")
def mbv2_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3, expansion: float | None = None,
               mid_chs: int | None = None, act_layer: ActFactory = nn.ReLU6,
               norm_layer: Callable[[int], nn.Module] | None = None) -> nn.Module:
    return InvertedResidual(in_chs, out_chs, stride, kernel_size=kernel_size, expansion=expansion, mid_chs=mid_chs,
                            act_layer=act_layer, norm_layer=norm_layer)

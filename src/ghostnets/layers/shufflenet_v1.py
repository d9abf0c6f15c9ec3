"""The ShuffleNet V1 unit (Zhang, Zhou, Lin, Sun, "ShuffleNet: An Extremely Efficient Convolutional Neural Network
for Mobile Devices", CVPR 2018, arXiv 1707.01083, Fig. 2 b/c) in the official megvii layout (docs/reference.md,
"ShuffleNet V1"; megvii-model/ShuffleNet-Series ``ShuffleNetV1/blocks.py``).

``branch_main_1``: 1x1 conv (``groups``; dense in the first unit of stage 2) -> BN -> ReLU -> depthwise k x k (stride)
-> BN; channel shuffle (megvii's order, the inverse of torchvision's ShuffleNetV2 shuffle; it matters for loading
megvii weights); ``branch_main_2``: grouped 1x1 conv -> BN. Stride 1: ``relu(x + main)``. Stride 2:
``cat(avgpool3x3s2(x), relu(main))``, the main branch making ``out - in`` channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .block_registry import register_block
from .channels import make_divisible
from .conv_bn_act import ConvSequence, conv_norm, is_identity
from .drop_path import DropPath


def channel_shuffle_v1(x: torch.Tensor, groups: int) -> torch.Tensor:
    """megvii's ShuffleNet V1 shuffle: ``reshape(b, C // g, g, h, w).permute(0, 2, 1, 3, 4).reshape(b, C, h, w)``."""
    return x.unflatten(1, (-1, groups)).transpose(1, 2).flatten(1, 2)


class ShuffleV1Block(nn.Module):
    """A ShuffleNet V1 unit with the official attribute names (``branch_main_1.{0,1,3,4}``, ``branch_main_2.{0,1}``).

    ``mid_chs`` defaults to ``out_chs // 4`` (the paper's bottleneck ratio 1:4 of the full output, also in stride-2
    units); ``dense_first=True`` makes the first 1x1 conv ungrouped (the first unit of stage 2, paper Table 1).
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, *, groups: int = 3, mid_chs: int | None = None,
                 kernel_size: int = 3, dense_first: bool = False, drop_path: float = 0.0) -> None:
        super().__init__()
        mid_chs = out_chs // 4 if mid_chs is None else int(mid_chs)
        main_out = out_chs - in_chs if stride == 2 else out_chs
        check_geometry(in_chs, out_chs, stride, groups, mid_chs, kernel_size, dense_first)
        self.stride, self.groups, self.mid_chs = stride, groups, mid_chs
        pw_groups = 1 if dense_first else groups
        self.branch_main_1 = ConvSequence(
            *conv_norm(in_chs, mid_chs, 1, groups=pw_groups), nn.ReLU(inplace=True),
            *conv_norm(mid_chs, mid_chs, kernel_size, stride, groups=mid_chs))
        self.branch_main_2 = ConvSequence(*conv_norm(mid_chs, main_out, 1, groups=groups))
        self.branch_proj = nn.AvgPool2d(3, 2, 1) if stride == 2 else None
        self.drop_path = DropPath(drop_path) if drop_path and stride == 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch_main_1(x)
        if self.groups > 1:
            out = channel_shuffle_v1(out, self.groups)
        out = self.branch_main_2(out)
        if self.branch_proj is not None:
            return torch.cat((self.branch_proj(x), F.relu(out)), 1)
        if not is_identity(self.drop_path):
            out = self.drop_path(out)
        return F.relu(out + x)

    def fuse(self) -> ShuffleV1Block:
        """The two ``ConvSequence`` branches fold their own BatchNorms in the walk; nothing else holds one."""
        self.branch_main_1.fuse()
        self.branch_main_2.fuse()
        return self


def check_geometry(in_chs: int, out_chs: int, stride: int, groups: int, mid_chs: int, kernel_size: int,
                   dense_first: bool) -> None:
    """Refuse, at construction, a unit the paper's Fig. 2 cannot build, naming the rule it breaks."""
    if stride not in (1, 2):
        raise ValueError(f"a ShuffleNet V1 unit takes stride 1 (residual add) or 2 (concat with an avg-pooled "
                         f"shortcut), got stride={stride}")
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups must be an integer >= 1, got {groups!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive (a 'same' depthwise conv), got {kernel_size}")
    if stride == 1 and in_chs != out_chs:
        raise ValueError(f"a stride-1 ShuffleNet V1 unit adds its input: in_chs must equal out_chs, got {in_chs} -> "
                         f"{out_chs}; use stride 2 to change the width")
    if stride == 2 and out_chs <= in_chs:
        raise ValueError(f"a stride-2 ShuffleNet V1 unit concatenates its {in_chs} pooled input channels with the "
                         f"main branch's out_chs - in_chs: out_chs must exceed in_chs, got {in_chs} -> {out_chs}")
    main_out = out_chs - in_chs if stride == 2 else out_chs
    checks = [("mid_chs", mid_chs), ("the main branch's output (out_chs" + (" - in_chs" if stride == 2 else "") + ")",
                                     main_out)]
    if not dense_first:
        checks.insert(0, ("in_chs", in_chs))
    bad = [f"{what} = {n}" for what, n in checks if n < 1 or n % groups]
    if bad:
        raise ValueError(f"groups={groups} must divide every grouped 1x1 conv's channels, but {', '.join(bad)}; "
                         f"pick channels that are multiples of {groups} (mid_chs defaults to out_chs // 4)")


@register_block("shufflev1", honours=("kernel_size", "expansion", "mid_chs"),
                paper="Zhang et al., ShuffleNet, CVPR 2018", arxiv="1707.01083", example=(24, 48),
                summary="grouped 1x1, channel shuffle, depthwise, grouped 1x1; + input (s1) or concat avg-pool (s2)")
def shufflev1_block(in_chs: int, out_chs: int, stride: int = 1, *, kernel_size: int = 3,
                    expansion: float | None = None, mid_chs: int | None = None, groups: int = 3) -> nn.Module:
    """``expansion``: ``mid_chs = in_chs * expansion`` rounded to a multiple of ``groups`` (the default is the
    paper's ``out_chs // 4``); ``groups`` (default 3, the official release's) is this block's own argument."""
    if expansion is not None:
        mid_chs = make_divisible(in_chs * expansion, groups)
    return ShuffleV1Block(in_chs, out_chs, stride, groups=groups, mid_chs=mid_chs, kernel_size=kernel_size)

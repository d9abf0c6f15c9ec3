"""RegNetX (Radosavovic et al., "Designing Network Design Spaces", CVPR 2020, arXiv 2003.13678) in torchvision's
layout, so torchvision's weights load as they are and give torchvision's logits (docs/reference.md §12): the plain
networks G-GhostNet (arXiv 2201.03297) is built on and compared with.

``stem`` (3x3 s2 conv to 32, BN, ReLU) -> ``trunk_output.block1..4`` (stride 2 each; blocks ``blockS-i``, RegNetX
bottlenecks with ``f.{a,b,c}`` and ``proj``) -> avg pool -> ``fc``. The stage table is what torchvision's
``BlockParams.from_init_params`` makes of the paper's (d, w0, wa, wm, g); stage widths smaller than the group width
use one group, as ``regnet_groups`` does.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..data.transforms import TORCHVISION_EVAL
from ..layers.conv_bn_act import ConvSequence, conv_norm
from ..layers.regnet_blocks import ResBottleneckBlock
from .base import ClassifierNet, finish_plain_net
from .family import Family, Variant, Weights

Config = tuple[tuple[int, ...], tuple[int, ...], int]  # depths, widths, group width

# torchvision's resolved configs: depths, widths, group width (from (depth, w0, wa, wm, g) of the paper's Table)
CONFIGS: dict[str, Config] = {
    "3_2gf": ((2, 6, 15, 2), (96, 192, 432, 1008), 48),  # (25, 88, 26.31, 2.25, 48)
    "8gf": ((2, 5, 15, 1), (80, 240, 720, 1920), 120),  # (23, 80, 49.56, 2.88, 120)
    "16gf": ((2, 6, 13, 1), (256, 512, 896, 2048), 128),  # (22, 216, 55.59, 2.1, 128)
}
STEM_CHS = 32


class RegNet(ClassifierNet):
    """RegNetX with torchvision's attribute names: ``stem, trunk_output.blockS.blockS-i, fc``."""

    head_name = "fc"
    stem_pattern = r"^stem\."
    stage_pattern = r"^trunk_output\.block(\d+)"
    supports_features_only = True

    def __init__(
        self, depths: tuple[int, ...], widths: tuple[int, ...], group_width: int, *, width: float = 1.0,
        num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
        deploy: bool = False, channels_last: bool = True,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, width=width, deploy=False,
                         channels_last=channels_last, drop_path_rate=drop_path_rate, default_input_size=(224, 224))
        check_plan("RegNetX", CONFIGS, width, depths, widths)
        self.stem = ConvSequence(*conv_norm(in_chans, STEM_CHS, 3, 2), nn.ReLU(inplace=True))
        n_blocks, index = sum(depths), 0
        stages, in_chs, reduction = [], STEM_CHS, 2
        for s, (depth, planes) in enumerate(zip(depths, widths), start=1):
            blocks = []
            for j in range(depth):
                blocks.append((f"block{s}-{j}", ResBottleneckBlock(
                    in_chs, planes, 2 if j == 0 else 1, group_width=group_width,
                    drop_path=drop_path_rate * index / n_blocks)))
                in_chs, index = planes, index + 1
            reduction *= 2
            stages.append((f"block{s}", nn.Sequential(OrderedDict(blocks))))
            self.feature_info.append(dict(num_chs=planes, reduction=reduction, module=f"trunk_output.block{s}"))
        self.trunk_output = nn.Sequential(OrderedDict(stages))
        finish_plain_net(self, in_chs, deploy)

    def make_head(self, num_classes: int) -> nn.Module:
        """torchvision's classifier init: N(0, 0.01) weights, zero bias."""
        head = super().make_head(num_classes)
        if isinstance(head, nn.Linear):
            nn.init.normal_(head.weight, 0.0, 0.01)
            nn.init.zeros_(head.bias)
        return head

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        blocks = self.stage_pattern if coarse else r"^trunk_output\.block(\d+)\.block\d+-(\d+)"
        return {"stem": self.stem_pattern, "blocks": blocks}

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [(f"trunk_output.{name}", stage) for name, stage in self.trunk_output.named_children()]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(self.prepare(x, self.stem[0].weight))

    def fuse(self) -> RegNet:
        """The walker in :func:`ghostnets.reparameterize` has fused the stem and every block already."""
        self.deploy = True
        return self.use_channels_last(self.channels_last)


def check_plan(family: str, configs: dict[str, Config], width: float, depths: tuple[int, ...],
               widths: tuple[int, ...], n_stages: int | None = None) -> None:
    """Refuse a width multiplier (each RegNetX size is its own config) and a stage plan that does not fit."""
    if width != 1.0:
        raise ValueError(f"{family} takes no width multiplier (got width={width}): each size is its own config; pass "
                         f"config= one of {sorted(configs)}, or depths/widths/group_width")
    count = len(depths) if n_stages is None else n_stages
    if not (len(depths) == len(widths) == count > 0) or min(depths) < 1:
        raise ValueError(f"{family}: depths and widths take one entry per stage ({count} stages), depths >= 1; got "
                         f"depths={tuple(depths)}, widths={tuple(widths)}")


def resolve_config(configs: dict[str, Config], config: str | None, depths: tuple[int, ...] | None,
                   widths: tuple[int, ...] | None, group_width: int | None, family: str) -> Config:
    """``(depths, widths, group_width)``: a named config of ``configs``, or the three given; never both or part."""
    own = (depths, widths, group_width)
    if config is not None:
        if any(v is not None for v in own):
            raise ValueError(f"{family}: pass config= or depths/widths/group_width, not both")
        if config not in configs:
            raise ValueError(f"unknown {family} config {config!r}; the known ones are {sorted(configs)}")
        return configs[config]
    if any(v is None for v in own):
        raise ValueError(f"{family} needs config= (one of {sorted(configs)}) or all of depths, widths, group_width")
    return tuple(depths), tuple(widths), int(group_width)


def regnet(
    config: str | None = None, *, depths: tuple[int, ...] | None = None, widths: tuple[int, ...] | None = None,
    group_width: int | None = None, **kwargs,
) -> RegNet:
    """RegNetX of a torchvision config (``config="3_2gf"``: ``torchvision.models.regnet_x_3_2gf()``) or of your own
    ``depths``/``widths``/``group_width``."""
    return RegNet(*resolve_config(CONFIGS, config, depths, widths, group_width, "RegNetX"), **kwargs)


_TV = "https://download.pytorch.org/models/"
# torchvision 0.29's meta (RegNet_X_*_Weights): num_params, _ops (GFLOPS = GMAdds), acc@1/acc@5; V2: resize 232
_V2_NOTE = ("torchvision's IMAGENET1K_V2 weights ({url}) reach {top1} top-1 evaluated with bilinear resize 232 -> "
            "crop 224; the card's weights and transform are IMAGENET1K_V1's.")


def _tv_variant(config: str, params: int, madds: int, gflops: float, v1: tuple[float, float, str],
                v2: tuple[float, str]) -> Variant:
    return Variant(width=1.0, params=params, madds=madds, paper_params=round(params / 1e6, 1),
                   paper_madds=round(gflops * 1e3), top1=v1[0], top5=v1[1], builder_kwargs=dict(config=config),
                   weights=Weights(url=_TV + v1[2], top1=v1[0]),
                   notes=_V2_NOTE.format(url=_TV + v2[1], top1=v2[0]))


FAMILY = Family(
    name="regnet",
    builder=regnet,
    variants={
        "regnet_x_3_2gf": _tv_variant("3_2gf", 15_296_552, 3_176_621_952, 3.177,
                                      (78.364, 93.992, "regnet_x_3_2gf-f342aeae.pth"),
                                      (81.196, "regnet_x_3_2gf-7071aa85.pth")),
        "regnet_x_8gf": _tv_variant("8gf", 39_572_648, 7_995_132_416, 7.995,
                                    (79.344, 94.686, "regnet_x_8gf-03ceed89.pth"),
                                    (81.682, "regnet_x_8gf-2b70d774.pth")),
        "regnet_x_16gf": _tv_variant("16gf", 54_278_536, 15_940_755_456, 15.941,
                                     (80.058, 94.944, "regnet_x_16gf-2007eb11.pth"),
                                     (82.716, "regnet_x_16gf-ba3796d7.pth")),
    },
    paper="Radosavovic et al., Designing Network Design Spaces, CVPR 2020 (the RegNetX baselines of G-GhostNet, "
          "IJCV 2022)",
    arxiv="https://arxiv.org/abs/2003.13678",
    code="https://github.com/pytorch/vision/blob/main/torchvision/models/regnet.py",
    recipe="pytorch_imagenet",
    notes="Figures and top-1/top-5 are torchvision's (IMAGENET1K_V1, trained with torchvision's 'medium models' "
          "recipe, which reproduces the paper closely); the weights are torchvision's files, whose state dicts load "
          "as they are.",
    eval_transform=TORCHVISION_EVAL,
)

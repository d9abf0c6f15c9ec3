"""G-GhostNet (Han et al., "GhostNets on Heterogeneous Devices via Cheap Operations", IJCV 2022, arXiv 2201.03297):
the GPU-oriented GhostNet, RegNetX with G-Ghost stages (docs/reference.md §12).

stem ``conv1`` 3x3 s2 to 32, ``bn1``, ReLU -> ``layer1..4`` (stride 2 each; ``layer1`` a plain RegNetX stage, ``layer3``
always a G-Ghost stage, ``layer2``/``layer4`` G-Ghost stages when deeper than 2 blocks, cheap ratio 0.5) -> avg pool ->
dropout 0.2 -> ``fc``. Attribute names are the official ``GGhostRegNet``'s, so the released files load as they are
(their ``module.`` prefix is stripped on reading).
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.transforms import TORCHVISION_EVAL
from ..layers.conv_bn_act import fold_named_pairs, is_identity
from ..layers.g_ghost_stage import GGhostStage
from ..layers.regnet_blocks import XBottleneck
from .base import ClassifierNet, finish_plain_net
from .family import Family, Variant, Weights
from .regnet import Config, check_plan, resolve_config

# The official constructors g_ghost_regnetx_XXX (RegNetX configs of d-li14/regnet.pytorch): depths, widths, group width
CONFIGS: dict[str, Config] = {
    "002": ((1, 1, 4, 7), (24, 56, 152, 368), 8),
    "004": ((1, 2, 7, 12), (32, 64, 160, 384), 16),
    "006": ((1, 3, 5, 7), (48, 96, 240, 528), 24),
    "008": ((1, 3, 7, 5), (64, 128, 288, 672), 16),
    "016": ((2, 4, 10, 2), (72, 168, 408, 912), 24),
    "032": ((2, 6, 15, 2), (96, 192, 432, 1008), 48),
    "040": ((2, 5, 14, 2), (80, 240, 560, 1360), 40),
    "064": ((2, 4, 10, 1), (168, 392, 784, 1624), 56),
    "080": ((2, 5, 15, 1), (80, 240, 720, 1920), 120),
    "120": ((2, 5, 11, 1), (224, 448, 896, 2240), 112),
    "160": ((2, 6, 13, 1), (256, 512, 896, 2048), 128),
    "320": ((2, 7, 13, 1), (336, 672, 1344, 2520), 168),
}
STEM_CHS = 32
CHEAP_RATIO = 0.5
RELEASE = "https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download/g_ghost_regnet/"


def is_g_ghost_stage(index: int, depth: int) -> bool:
    """The official rule: stage 3 always, stages 2 and 4 when deeper than 2 blocks, stage 1 never (0-based index)."""
    return index == 2 or (index in (1, 3) and depth > 2)


class GGhostRegNet(ClassifierNet):
    """G-GhostNet with the official attribute names: ``conv1, bn1, relu, layer1..4, fc``."""

    head_name = "fc"
    stem_pattern = r"^conv1|^bn1"
    stage_pattern = r"^layer(\d+)"
    supports_features_only = True

    def __init__(
        self, depths: tuple[int, ...], widths: tuple[int, ...], group_width: int, *, cheap_ratio: float = CHEAP_RATIO,
        width: float = 1.0, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2,
        drop_path_rate: float = 0.0, deploy: bool = False, channels_last: bool = True,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, width=width, deploy=False,
                         channels_last=channels_last, drop_path_rate=drop_path_rate, default_input_size=(224, 224))
        check_plan("G-GhostNet", CONFIGS, width, depths, widths, n_stages=4)
        self.conv1 = nn.Conv2d(in_chans, STEM_CHS, 3, 2, 1, bias=False)
        self.bn1, self.relu = nn.BatchNorm2d(STEM_CHS), nn.ReLU(inplace=True)
        n_blocks = sum(depths)
        rates = [drop_path_rate * i / n_blocks for i in range(n_blocks)]
        in_chs, reduction, first = STEM_CHS, 2, 0
        for s, (depth, planes) in enumerate(zip(depths, widths)):
            dpr, first = rates[first:first + depth], first + depth
            if is_g_ghost_stage(s, depth):
                stage = GGhostStage(in_chs, planes, depth, 2, group_width, cheap_ratio=cheap_ratio, drop_path=dpr)
            else:
                stage = nn.Sequential(*[XBottleneck(in_chs if j == 0 else planes, planes, 2 if j == 0 else 1,
                                                    group_width=group_width, drop_path=dpr[j]) for j in range(depth)])
            in_chs, reduction = planes, reduction * 2
            setattr(self, f"layer{s + 1}", stage)
            self.feature_info.append(dict(num_chs=planes, reduction=reduction, module=f"layer{s + 1}"))
        finish_plain_net(self, in_chs, deploy)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's format; fine groups: a plain stage's blocks, then a G-Ghost stage's ``base``, ``layers.i``,
        ``merge``/``cheap`` and ``end`` in the order they run."""
        if coarse:
            return super().group_matcher(coarse=True)
        return {"stem": self.stem_pattern, "blocks": [
            (r"^layer(\d+)\.(\d+)\.", None),
            (r"^layer(\d+)\.base\.", (0,)),
            (r"^layer(\d+)\.layers\.(\d+)\.", (1,)),
            (r"^layer(\d+)\.(?:merge|cheap)\.", (1000,)),
            (r"^layer(\d+)\.end\.", (1001,)),  # not 99999: timm reads that as "the previous group"
        ]}

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [(f"layer{s}", getattr(self, f"layer{s}")) for s in range(1, 5)]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.prepare(x, self.conv1.weight))
        return self.relu(x if is_identity(self.bn1) else self.bn1(x))

    def fuse(self) -> GGhostRegNet:
        """Fold the stem BatchNorm; the walker in :func:`ghostnets.reparameterize` has fused every stage already."""
        fold_named_pairs(self, [("conv1", "bn1")])
        self.deploy = True
        return self.use_channels_last(self.channels_last)


def g_ghost_regnet(
    config: str | None = None, *, depths: tuple[int, ...] | None = None, widths: tuple[int, ...] | None = None,
    group_width: int | None = None, **kwargs,
) -> GGhostRegNet:
    """G-GhostNet of an official config (``config="032"``: ``g_ghost_regnetx_032()``; any of :data:`CONFIGS`) or of
    your own RegNetX ``depths``/``widths``/``group_width``."""
    return GGhostRegNet(*resolve_config(CONFIGS, config, depths, widths, group_width, "G-GhostNet"), **kwargs)


def _variant(config: str, params: int, madds: int, paper: tuple[float, float], top1: float, file: str) -> Variant:
    return Variant(width=1.0, params=params, madds=madds, paper_params=paper[0], paper_madds=paper[1], top1=top1,
                   builder_kwargs=dict(config=config), weights=Weights(url=RELEASE + file, top1=top1))


FAMILY = Family(
    name="g_ghostnet",
    builder=g_ghost_regnet,
    variants={
        "g_ghost_regnetx_032": _variant("032", 10_511_000, 1_801_746_240, (10.5, 1800), 77.8,
                                        "g_ghost_regnet_3.2g_77.8.pth"),
        "g_ghost_regnetx_040": _variant("040", 15_726_268, 2_228_368_516, (15.7, 2200), 78.6,
                                        "g_ghost_regnet_4.0g_78.6.pth"),
        "g_ghost_regnetx_080": _variant("080", 24_586_928, 4_149_668_216, (24.6, 4200), 79.0,
                                        "g_ghost_regnet_8.0g_79.0.pth"),
        "g_ghost_regnetx_160": _variant("160", 32_381_704, 8_997_384_192, (32.4, 9000), 79.9,
                                        "g_ghost_regnet_16.0g_79.9.pth"),
    },
    paper="Han et al., GhostNets on Heterogeneous Devices via Cheap Operations, IJCV 2022",
    arxiv="https://arxiv.org/abs/2201.03297",
    code="https://github.com/huawei-noah/Efficient-AI-Backbones/tree/master/g_ghost_pytorch",
    recipe="pytorch_imagenet",
    notes="ImageNet top-1 and figures from the official readme (its training followed the PyTorch examples' ImageNet "
          "script; exact hyper-parameters unpublished). Other official configs: g_ghost_regnet(config='002' ... "
          "'320'). Released files carry a 'module.' prefix; it is stripped on loading.",
    extra_kwargs=("cheap_ratio",),
    eval_transform=TORCHVISION_EVAL,
)

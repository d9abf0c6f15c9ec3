"""ShuffleNet V1 (Zhang, Zhou, Lin, Sun, CVPR 2018, arXiv 1707.01083) in the official megvii layout
(megvii-model/ShuffleNet-Series ``ShuffleNetV1/network.py``; docs/reference.md "ShuffleNet V1"), so megvii's
weight files load as they are.

``first_conv`` (3x3 s2 conv, BN, ReLU) -> ``maxpool`` (3x3 s2) -> ``features.0..15`` (ShuffleNet units, 4/8/4 per
stage, the first of each with stride 2; the first unit of stage 2 has a dense first 1x1 conv) -> global average pool
-> ``classifier.0`` (Linear, no bias). Channels: megvii's ``stage_out_channels`` for g=3 and g=8; the paper's
Table 1 (1.0x) for g=1, 2, 4, scaled by the width and rounded to a multiple of 4g (so the bottleneck, out/4, splits
into g groups), the stem as megvii's (12 / 24 / 24 / 48 at 0.5x / 1.0x / 1.5x / 2.0x).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..data.transforms import InputSpec
from ..layers.channels import make_divisible
from ..layers.conv_bn_act import ConvSequence, conv_norm, fuse_tree
from ..layers.shufflenet_v1 import ShuffleV1Block
from .base import ClassifierNet
from .family import Family, Variant

REPEATS = (4, 8, 4)  # units per stage (stages 2-4), the first with stride 2
# megvii's stage_out_channels[1:] (stem, stage 2, 3, 4) per (groups, width): the released g=3 and g=8 models
MEGVII_CHANNELS: dict[tuple[int, float], tuple[int, int, int, int]] = {
    (3, 0.5): (12, 120, 240, 480), (3, 1.0): (24, 240, 480, 960),
    (3, 1.5): (24, 360, 720, 1440), (3, 2.0): (48, 480, 960, 1920),
    (8, 0.5): (16, 192, 384, 768), (8, 1.0): (24, 384, 768, 1536),
    (8, 1.5): (24, 576, 1152, 2304), (8, 2.0): (48, 768, 1536, 3072),
}
PAPER_STAGE2 = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}  # paper Table 1 (1.0x); stages 3 and 4 double it
STEM_BY_WIDTH = {0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}  # megvii's g=3 stems
# megvii's ToBGRTensor: OpenCV BGR, float 0-255, no mean/std; resize 256 -> centre crop 224 (OpenCV's bilinear)
MEGVII_INPUT = InputSpec(interpolation="bilinear", mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3, bgr=True)


def stage_channels(groups: int, width: float) -> tuple[int, int, int, int]:
    """(stem, stage 2, stage 3, stage 4) output channels of ShuffleNet ``width``x with ``groups`` groups."""
    if (groups, width) in MEGVII_CHANNELS:
        return MEGVII_CHANNELS[(groups, width)]
    if groups not in PAPER_STAGE2:
        raise ValueError(f"ShuffleNet V1 is defined for groups in {sorted(PAPER_STAGE2)} (paper Table 1), got "
                         f"groups={groups}; build other layouts from ShuffleV1Block")
    stage2 = make_divisible(PAPER_STAGE2[groups] * width, 4 * groups)
    stem = STEM_BY_WIDTH.get(width) or make_divisible(24 * width, groups if groups > 1 else 4)
    return stem, stage2, 2 * stage2, 4 * stage2


class ShuffleNetV1(ClassifierNet):
    """ShuffleNet V1 with megvii's attribute names: ``first_conv, maxpool, features.N, classifier.0``."""

    stem_pattern = r"^first_conv"
    stage_pattern = r"^features\.(\d+)"
    supports_features_only = True

    def __init__(
        self, groups: int = 3, *, width: float = 1.0, num_classes: int = 1000, in_chans: int = 3,
        drop_rate: float = 0.0, drop_path_rate: float = 0.0, deploy: bool = False, channels_last: bool = True,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, width=width, deploy=False,
                         channels_last=channels_last, drop_path_rate=drop_path_rate, default_input_size=(224, 224))
        stem, *widths = stage_channels(groups, width)
        self.groups = groups
        self.first_conv = ConvSequence(*conv_norm(in_chans, stem, 3, 2), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        blocks, in_chs, n_blocks, reduction = [], stem, sum(REPEATS), 4
        for s, (repeats, out_chs) in enumerate(zip(REPEATS, widths)):
            for i in range(repeats):
                blocks.append(ShuffleV1Block(in_chs, out_chs, 2 if i == 0 else 1, groups=groups,
                                             dense_first=s == 0 and i == 0,
                                             drop_path=drop_path_rate * len(blocks) / n_blocks))
                in_chs = out_chs
            reduction *= 2
            self.feature_info.append(dict(num_chs=out_chs, reduction=reduction, module=f"features.{len(blocks) - 1}"))
        self.features = nn.Sequential(*blocks)
        self.num_features = in_chs
        self.global_pool = nn.AdaptiveAvgPool2d(1)  # megvii's AvgPool2d(7) at 224, any input size here
        self.classifier = self.make_head(num_classes)
        self._init_weights()
        if deploy:
            fuse_tree(self)
        self.use_channels_last(channels_last)

    def _init_weights(self) -> None:
        """megvii's init: convs N(0, std 1/in_channels_per_group) (first conv 0.01), BN bias 1e-4, Linear N(0, 0.01)."""
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.01 if name.startswith("first") else 1.0 / m.weight.shape[1])
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.constant_(m.bias, 1e-4)

    def make_head(self, num_classes: int) -> nn.Module:
        """megvii's ``classifier = Sequential(Linear(C, n, bias=False))``, weights N(0, 0.01)."""
        if num_classes <= 0:
            return nn.Identity()
        linear = nn.Linear(self.num_features, num_classes, bias=False)
        nn.init.normal_(linear.weight, 0.0, 0.01)
        return nn.Sequential(linear)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return {"stem": self.stem_pattern, "blocks": self.stage_pattern}

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [(f"features.{i}", block) for i, block in enumerate(self.features)]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.first_conv(self.prepare(x, self.first_conv[0].weight)))

    def fuse(self) -> ShuffleNetV1:
        """The walker in :func:`ghostnets.reparameterize` has fused the stem and every unit already."""
        self.deploy = True
        return self.use_channels_last(self.channels_last)


def shufflenetv1(groups: int = 3, **kwargs) -> ShuffleNetV1:
    """ShuffleNet V1 ``width``x with ``groups`` groups (1, 2, 3, 4 or 8)."""
    return ShuffleNetV1(groups, **kwargs)


WIDTHS = {"050": 0.5, "100": 1.0, "150": 1.5, "200": 2.0}
# (params, MAdds at 224) of this module's models, equal to megvii's classes (g=3, 8) and pytorchcv's ShuffleNet
# less its classifier bias (docs/reference.md "ShuffleNet V1"; tests/test_shufflenetv1.py)
COUNTS: dict[str, tuple[int, int]] = {
    "shufflenetv1_g1_050": (533_484, 38_517_408),
    "shufflenetv1_g1_100": (1_530_936, 143_078_976),
    "shufflenetv1_g1_150": (2_992_032, 308_096_352),
    "shufflenetv1_g1_200": (4_917_744, 550_334_592),
    "shufflenetv1_g2_050": (677_520, 40_906_464),
    "shufflenetv1_g2_100": (1_732_848, 140_836_512),
    "shufflenetv1_g2_150": (3_341_000, 308_992_448),
    "shufflenetv1_g2_200": (5_256_896, 539_138_624),
    "shufflenetv1_g3_050": (717_324, 37_589_856),
    "shufflenetv1_g3_100": (1_864_728, 137_460_672),
    "shufflenetv1_g3_150": (3_441_168, 292_443_552),
    "shufflenetv1_g3_200": (5_449_776, 524_045_184),
    "shufflenetv1_g4_050": (834_984, 40_710_528),
    "shufflenetv1_g4_100": (1_967_344, 134_339_776),
    "shufflenetv1_g4_150": (3_678_712, 295_086_976),
    "shufflenetv1_g4_200": (5_592_528, 510_289_536),
    "shufflenetv1_g8_050": (1_010_448, 40_469_760),
    "shufflenetv1_g8_100": (2_433_768, 138_365_952),
    "shufflenetv1_g8_150": (4_268_952, 290_188_800),
    "shufflenetv1_g8_200": (6_521_232, 521_942_016),
}
# official README (g=3, 8): FLOPs (M), params (M), top-1 / top-5 error; paper Table 2 (error) and Table 1 (MFLOPs)
README = {(3, 2.0): (524, 5.4, 25.9, 8.6), (8, 2.0): (522, 6.5, 27.1, 9.2), (3, 1.5): (292, 3.4, 28.4, 9.8),
          (8, 1.5): (290, 4.3, 29.0, 10.4), (3, 1.0): (138, 1.9, 32.2, 12.3), (8, 1.0): (138, 2.4, 32.0, 13.6),
          (3, 0.5): (38, 0.7, 42.7, 20.0), (8, 0.5): (40, 1.0, 41.2, 19.0)}
PAPER_ERROR = {(1, 1.0): 33.6, (2, 1.0): 32.7, (3, 1.0): 32.6, (4, 1.0): 32.8, (8, 1.0): 32.4,
               (1, 0.5): 45.1, (2, 0.5): 44.4, (3, 0.5): 43.2, (4, 0.5): 41.6, (8, 0.5): 42.3}
PAPER_MFLOPS = {(1, 1.0): 143, (2, 1.0): 140, (4, 1.0): 133, (1, 0.5): 38, (2, 0.5): 38, (4, 0.5): 38}
_ROUNDED = ("Channels: the paper's Table 1 scaled by {w:g} is {raw:g}, not a multiple of 4g = {d}; rounded to {got} so "
            "the bottleneck (out/4) splits into {g} groups (the paper gives no rule).")


def _variant(groups: int, width: float) -> Variant:
    name = f"shufflenetv1_g{groups}_{next(k for k, w in WIDTHS.items() if w == width)}"
    params, madds = COUNTS[name]
    notes = []
    if (groups, width) in README:
        mflops, paper_params, err1, err5 = README[(groups, width)]
        top1, top5 = round(100 - err1, 1), round(100 - err5, 1)
        if (groups, width) in PAPER_ERROR:
            notes.append(f"The paper's Table 2 gives {100 - PAPER_ERROR[(groups, width)]:.1f} top-1 (the card's is "
                         "the released model's, megvii's README).")
    else:
        mflops, err = PAPER_MFLOPS.get((groups, width), math.nan), PAPER_ERROR.get((groups, width), math.nan)
        paper_params, top1, top5 = math.nan, round(100 - err, 1), None
        notes.append("Paper Table 2 top-1 (100 - error); the paper prints no parameter count." if err == err else
                     "No published top-1, params or MAdds for this width and group count: figures are NaN.")
        raw = PAPER_STAGE2[groups] * width
        if raw != stage_channels(groups, width)[1]:
            notes.append(_ROUNDED.format(w=width, raw=raw, d=4 * groups, got=stage_channels(groups, width)[1],
                                         g=groups))
    return Variant(width=width, params=params, madds=madds, paper_params=paper_params, paper_madds=mflops,
                   top1=top1, top5=top5, builder_kwargs=dict(groups=groups), notes=" ".join(notes))


FAMILY = Family(
    name="shufflenetv1",
    builder=shufflenetv1,
    variants={f"shufflenetv1_g{g}_{k}": _variant(g, w) for g in (1, 2, 3, 4, 8) for k, w in WIDTHS.items()},
    paper="Zhang, Zhou, Lin, Sun, ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile "
          "Devices, CVPR 2018",
    arxiv="https://arxiv.org/abs/1707.01083",
    code="https://github.com/megvii-model/ShuffleNet-Series/tree/master/ShuffleNetV1",
    recipe="shufflenetv1",
    notes="g=3 and g=8: megvii's released models (top-1/top-5 from its README, whose 'Top-1' column is the error); "
          "their weights are on OneDrive/BaiduYun only (no direct URL), so no card carries a Weights entry. Eval "
          "input as megvii's: BGR, 0-255, no mean/std (InputSpec bgr=True). Deploy form: every BatchNorm folded.",
    eval_transform=MEGVII_INPUT,
)

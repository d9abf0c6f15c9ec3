"""ShuffleNet V2 (Ma, Zhang, Zheng, Sun, ECCV 2018, arXiv 1807.11164, Table 5) in torchvision's layout, so
torchvision's ``shufflenet_v2_x*`` weights load as they are and give torchvision's logits (docs/reference.md §13).

``conv1`` (3x3 s2 conv to 24, BN, ReLU) -> ``maxpool`` (3x3 s2) -> ``stage2..4`` (a stride-2 unit, then stride-1
units; :class:`~ghostnets.layers.shufflenet_v2.ShuffleV2Block`) -> ``conv5`` (1x1 conv, BN, ReLU) -> global average
pool -> ``fc``. No dropout and no drop path: the paper's head has none, and a unit has no residual sum to drop.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.transforms import TORCHVISION_EVAL, InputSpec
from ..layers.conv_bn_act import ConvSequence, activation, conv_norm
from ..layers.shufflenet_v2 import ShuffleV2Block
from .base import ClassifierNet, finish_plain_net
from .family import Family, Variant, Weights

REPEATS = (4, 8, 4)  # units of stage2, stage3, stage4 (the first of each at stride 2)
# output channels of conv1, stage2, stage3, stage4, conv5 per width (Table 5; torchvision's stages_out_channels)
CHANNELS: dict[float, tuple[int, int, int, int, int]] = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}


class ShuffleNetV2(ClassifierNet):
    """ShuffleNet V2 with torchvision's attribute names: ``conv1, maxpool, stage2..4, conv5, fc``.

    ``feature_info`` taps the last module at each stride: ``conv1`` (2), ``maxpool`` (4), ``stage2`` (8), ``stage3``
    (16) and ``conv5`` (32).
    """

    head_name = "fc"
    stem_pattern = r"^conv1\."
    stage_pattern = r"^stage(\d+)"
    supports_features_only = True

    def __init__(
        self, channels: tuple[int, ...] | None = None, repeats: tuple[int, ...] = REPEATS, *, width: float = 1.0,
        kernel_size: int = 3, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
        drop_path_rate: float = 0.0, deploy: bool = False, channels_last: bool = True,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, width=width, deploy=False,
                         channels_last=channels_last, drop_path_rate=drop_path_rate, default_input_size=(224, 224))
        channels = resolve_channels(width, channels, repeats)
        if drop_path_rate:
            raise ValueError(f"ShuffleNet V2 has no residual sum to drop a path from: drop_path_rate must be 0, got "
                             f"{drop_path_rate}; use drop_rate for dropout before the classifier")
        self.conv1 = ConvSequence(*conv_norm(in_chans, channels[0], 3, 2), activation(nn.ReLU))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.feature_info = [dict(num_chs=channels[0], reduction=2, module="conv1"),
                             dict(num_chs=channels[0], reduction=4, module="maxpool")]
        in_chs, reduction = channels[0], 4
        for s, (n, out_chs) in enumerate(zip(repeats, channels[1:4]), start=2):
            units = [ShuffleV2Block(in_chs if j == 0 else out_chs, out_chs, 2 if j == 0 else 1,
                                    kernel_size=kernel_size) for j in range(n)]
            setattr(self, f"stage{s}", nn.Sequential(*units))
            in_chs, reduction = out_chs, reduction * 2
            if s < 4:  # stage4's stride is conv5's: the tap at 32 is conv5
                self.feature_info.append(dict(num_chs=out_chs, reduction=reduction, module=f"stage{s}"))
        self.conv5 = ConvSequence(*conv_norm(in_chs, channels[4], 1), activation(nn.ReLU))
        self.feature_info.append(dict(num_chs=channels[4], reduction=32, module="conv5"))
        finish_plain_net(self, channels[4], deploy)

    def stages(self) -> list[tuple[str, nn.Module]]:
        names = ["conv1", "maxpool", "stage2", "stage3", "stage4", "conv5"]
        return [(name, getattr(self, name)) for name in names]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """Only the input check: ``conv1`` and ``maxpool`` are the stride-2 and stride-4 taps among the stages."""
        return self.prepare(x, self.conv1[0].weight)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        blocks = [(r"^stage(\d+)" if coarse else r"^stage(\d+)\.(\d+)", None), (r"^conv5\.", (5,))]
        return {"stem": self.stem_pattern, "blocks": blocks}

    def fuse(self) -> ShuffleNetV2:
        """The walker in :func:`ghostnets.reparameterize` has fused ``conv1``, ``conv5`` and every unit already."""
        self.deploy = True
        return self.use_channels_last(self.channels_last)


def resolve_channels(width: float, channels: tuple[int, ...] | None, repeats: tuple[int, ...]) -> tuple[int, ...]:
    """The five output widths: torchvision's table for ``width``, or your own ``channels`` (then ``width`` 1)."""
    if len(repeats) != 3 or any(not isinstance(n, int) or n < 1 for n in repeats):
        raise ValueError(f"repeats takes the unit count of stage2, stage3, stage4 (3 integers >= 1), got {repeats}")
    if channels is None:
        if width not in CHANNELS:
            raise ValueError(f"ShuffleNet V2 has no width formula: its widths are a table (Table 5); width must be "
                             f"one of {sorted(CHANNELS)}, got {width}; or pass channels=(conv1, stage2, stage3, "
                             "stage4, conv5)")
        return CHANNELS[width]
    if width != 1.0:
        raise ValueError(f"pass channels= or width=, not both (got width={width})")
    channels = tuple(channels)
    if len(channels) != 5 or any(not isinstance(c, int) or c < 1 for c in channels):
        raise ValueError(f"channels takes 5 widths (conv1, stage2, stage3, stage4, conv5), integers >= 1, got "
                         f"{channels}")
    return channels


def shufflenetv2(**kwargs) -> ShuffleNetV2:
    """ShuffleNet V2 of a published ``width`` (0.5, 1.0, 1.5, 2.0: ``torchvision.models.shufflenet_v2_x*``), or of
    your own ``channels`` and ``repeats``; ``kernel_size``: the depthwise kernel of every unit (3 in the paper)."""
    return ShuffleNetV2(**kwargs)


_TV = "https://download.pytorch.org/models/"
TORCHVISION_EVAL_232 = InputSpec(resize=232, interpolation="bilinear")  # its x1_5/x2_0 weights (vision PR #5906)


def _variant(width: float, params: int, madds: int, paper: tuple[float, float, float], tv: tuple[float, float, str],
             note: str, eval_transform: InputSpec | None = None) -> Variant:
    """``paper``: Table 5's weights (M) and FLOPs (M), and the top-1 of the official megvii code's release
    (ShuffleNet-Series README: 100 - its top-1 error); ``tv``: torchvision's meta (acc@1, acc@5, file)."""
    return Variant(width=width, params=params, madds=madds, paper_params=paper[0], paper_madds=paper[1],
                   top1=tv[0], top5=tv[1], weights=Weights(url=_TV + tv[2], top1=tv[0]),
                   notes=f"The official megvii release reports {paper[2]} top-1. {note}", eval_transform=eval_transform)


_PORTED = "torchvision's weights were ported from ericsun99/Shufflenet-v2-Pytorch; evaluated bilinear 256 -> 224."
_NEW_RECIPE = ("torchvision's weights were trained with its new recipe (vision PR #5906) and are evaluated bilinear "
               "resize 232 -> crop 224, the card's transform.")
# per name: width, exact params, exact MAdds @224 (docs/reference.md §13), paper (M params, M FLOPs, top-1),
# torchvision's meta (acc@1, acc@5, file)
VARIANTS = {
    "shufflenetv2_x0_5": (0.5, 1_366_792, 40_476_448, (1.4, 41, 61.1),
                          (60.552, 81.746, "shufflenetv2_x0.5-f707e7126e.pth")),
    "shufflenetv2_x1_0": (1.0, 2_278_604, 144_907_992, (2.3, 146, 69.4),
                          (69.362, 88.316, "shufflenetv2_x1-5666bf0f80.pth")),
    "shufflenetv2_x1_5": (1.5, 3_503_624, 295_759_392, (3.5, 299, 72.6),
                          (72.996, 91.086, "shufflenetv2_x1_5-3c479a10.pth")),
    "shufflenetv2_x2_0": (2.0, 7_393_996, 583_253_464, (7.4, 591, 75.0),
                          (76.230, 93.006, "shufflenetv2_x2_0-8be3c8ee.pth")),
}


FAMILY = Family(
    name="shufflenetv2",
    builder=shufflenetv2,
    variants={name: _variant(*VARIANTS[name], *((_NEW_RECIPE, TORCHVISION_EVAL_232) if VARIANTS[name][0] > 1
                                                 else (_PORTED,)))
              for name in VARIANTS},
    paper="Ma, Zhang, Zheng, Sun, ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design, ECCV 2018",
    arxiv="https://arxiv.org/abs/1807.11164",
    code="https://github.com/pytorch/vision/blob/main/torchvision/models/shufflenetv2.py",
    recipe="shufflenetv2",
    notes="Counts, top-1/top-5 and weights are torchvision's (IMAGENET1K_V1); its state dicts load as they are. "
          "The card's recipe is the official megvii training (batch 1024, lr 0.5 decayed linearly over 300k "
          "iterations, wd 4e-5, label smoothing 0.1). Deploy form: every BN folded.",
    extra_kwargs=("channels", "repeats", "kernel_size"),
    eval_transform=TORCHVISION_EVAL,
)

"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018, arXiv
1801.04381) in torchvision's layout, so ``torchvision.models.mobilenet_v2(width_mult=w)``'s weights load as they are
and give torchvision's logits (docs/reference.md §14); :func:`timm_to_torchvision` maps timm's ``mobilenetv2_*``
files onto it.

``features.0`` (3x3 s2 conv to 32, BN, ReLU6) -> ``features.1..17`` (inverted residuals, the paper's Table 2) ->
``features.18`` (1x1 conv to 1280, BN, ReLU6) -> avg pool -> ``classifier`` (Dropout 0.2, Linear). Width scaling:
every width ``c * w`` and the stem rounded to a multiple of 8; the last conv ``1280 * max(1, w)`` rounded alike.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..data.transforms import TORCHVISION_EVAL
from ..layers.channels import make_divisible
from ..layers.conv_bn_act import ConvSequence, activation, conv_norm
from ..layers.inverted_residual import InvertedResidual
from .base import ClassifierNet, finish_plain_net
from .family import Family, Variant, Weights

# the paper's Table 2: expansion t, output channels c, repeats n, stride s of the first repeat
SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHS, LAST_CHS, ROUND = 32, 1280, 8  # torchvision: round_nearest=8


class MobileNetV2(ClassifierNet):
    """MobileNetV2 with torchvision's attribute names: ``features.{0..18}``, ``classifier.1``."""

    head_name = "classifier"
    stem_pattern = r"^features\.0\."
    stage_pattern = r"^features\.(\d+)\."
    supports_features_only = True

    def __init__(
        self, *, width: float = 1.0, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2,
        drop_path_rate: float = 0.0, deploy: bool = False, channels_last: bool = True,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, width=width, deploy=False,
                         channels_last=channels_last, drop_path_rate=drop_path_rate, default_input_size=(224, 224))
        in_chs = make_divisible(STEM_CHS * width, ROUND)
        layers: list[nn.Module] = [ConvSequence(*conv_norm(in_chans, in_chs, 3, 2), activation(nn.ReLU6))]
        n_blocks, reduction = sum(n for _, _, n, _ in SETTINGS), 2
        for t, c, n, s in SETTINGS:
            out_chs = make_divisible(c * width, ROUND)
            for j in range(n):
                stride = s if j == 0 else 1
                index = len(layers) - 1
                layers.append(InvertedResidual(in_chs, out_chs, stride, expansion=t,
                                               drop_path=drop_path_rate * index / n_blocks))
                in_chs = out_chs
            reduction *= s
            self.add_tap(out_chs, reduction, f"features.{len(layers) - 1}")
        last = make_divisible(LAST_CHS * max(1.0, width), ROUND)
        layers.append(ConvSequence(*conv_norm(in_chs, last, 1), activation(nn.ReLU6)))
        self.features = nn.Sequential(*layers)
        finish_plain_net(self, last, deploy)

    def make_head(self, num_classes: int) -> nn.Module:
        """torchvision's ``classifier``: ``Sequential(Dropout(drop_rate), Linear)``, N(0, 0.01) weights, zero bias."""
        if num_classes <= 0:
            return nn.Identity()
        linear = nn.Linear(self.num_features, num_classes)
        nn.init.normal_(linear.weight, 0.0, 0.01)
        nn.init.zeros_(linear.bias)
        return nn.Sequential(nn.Dropout(self.drop_rate), linear)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The dropout is ``classifier.0`` (torchvision's layout), not the base class's functional one."""
        x = self.forward_pre_logits(x)
        return x if pre_logits else self.get_classifier()(x)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """The stem, then one group per ``features.i`` (the blocks, and the last 1x1 conv)."""
        return {"stem": self.stem_pattern, "blocks": self.stage_pattern}

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [(f"features.{name}", module) for name, module in self.features.named_children()]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """Input checks only: the stem conv is ``features.0``, run as the first stage (torchvision's layout)."""
        return self.prepare(x, self.features[0][0].weight)

    def fuse(self) -> MobileNetV2:
        """The walker in :func:`ghostnets.reparameterize` has fused every ``features.i`` already."""
        self.deploy = True
        return self.use_channels_last(self.channels_last)


def mobilenetv2(width: float = 1.0, **kwargs) -> MobileNetV2:
    """MobileNetV2 at width multiplier ``width``: ``torchvision.models.mobilenet_v2(width_mult=width)``."""
    return MobileNetV2(width=width, **kwargs)


_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.(\w+)\.(.+)$")
_TIMM_DS = {"conv_dw": "conv.0.0", "bn1": "conv.0.1", "conv_pw": "conv.1", "bn2": "conv.2"}  # timm's first block
_TIMM_IR = {"conv_pw": "conv.0.0", "bn1": "conv.0.1", "conv_dw": "conv.1.0", "bn2": "conv.1.1", "conv_pwl": "conv.2",
            "bn3": "conv.3"}
_TIMM_TOP = {"conv_stem": "features.0.0", "bn1": "features.0.1", "conv_head": "features.18.0", "bn2": "features.18.1",
             "classifier": "classifier.1"}


def timm_to_torchvision(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm ``mobilenetv2_{035,050,075,100,140}`` state dict (``conv_stem``, ``blocks.s.j``, ``conv_head``) in
    torchvision's layout (``features.i``, ``classifier.1``), the same tensors: the two compute the same function.

    Load it with ``model.load_state_dict(timm_to_torchvision(sd))``. Not a checkpoint filter: those apply to every
    file read, and timm's own files (a distillation teacher) must stay as they are.
    """
    depths = [n for _, _, n, _ in SETTINGS]
    found = sorted({tuple(map(int, m.groups()[:2])) for k in state_dict if (m := _TIMM_BLOCK.match(k))})
    expected = [(s, j) for s, n in enumerate(depths) for j in range(n)]
    if found != expected or "conv_stem.weight" not in state_dict:
        raise ValueError(f"not a timm mobilenetv2_* state dict: expected conv_stem and blocks (stage, block) "
                         f"{expected}, found {found[:8]}{'...' if len(found) > 8 else ''}")
    starts = [1 + sum(depths[:s]) for s in range(len(depths))]
    out = {}
    for key, value in state_dict.items():
        m = _TIMM_BLOCK.match(key)
        if m:
            s, j, module, leaf = int(m[1]), int(m[2]), m[3], m[4]
            names = _TIMM_DS if s == 0 else _TIMM_IR
            if module not in names:
                raise ValueError(f"{key}: timm's MobileNetV2 blocks hold {sorted(names)} only (an SE or other "
                                 "variant has no torchvision layout)")
            out[f"features.{starts[s] + j}.{names[module]}.{leaf}"] = value
            continue
        module, _, leaf = key.partition(".")
        if module not in _TIMM_TOP:
            raise ValueError(f"{key}: not a key of timm's MobileNetV2 (its top level holds {sorted(_TIMM_TOP)})")
        out[f"{_TIMM_TOP[module]}.{leaf}"] = value
    return out


_TV_URL = "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth"  # torchvision MobileNet_V2_Weights.V1
_SLIM = ("Paper figures and top-1 are the authors' TF-slim checkpoint table (tensorflow/models, "
         "research/slim/nets/mobilenet/README.md, mobilenet_v2_{w}_224; TF's own counts); no torchvision or "
         "timm weights at this width are carded.")


def _variant(width: float, params: int, madds: int, paper: tuple[float, float, float, float], **kw) -> Variant:
    return Variant(width=width, params=params, madds=madds, paper_params=paper[0], paper_madds=paper[1],
                   top1=paper[2], top5=paper[3], **kw)


FAMILY = Family(
    name="mobilenetv2",
    builder=mobilenetv2,
    variants={  # params/madds: torchvision's mobilenet_v2(width_mult=w), counted (docs/reference.md §14)
        "mobilenetv2_050": _variant(0.5, 1_968_680, 97_131_840, (1.95, 97, 65.4, 86.4), notes=_SLIM.format(w="0.5")),
        "mobilenetv2_075": _variant(0.75, 2_636_424, 209_069_792, (2.61, 209, 69.8, 89.6),
                                    notes=_SLIM.format(w="0.75")),
        "mobilenetv2_100": _variant(
            1.0, 3_504_872, 300_774_272, (3.5, 300, 71.878, 90.286), weights=Weights(url=_TV_URL, top1=71.878),
            notes="Top-1/top-5 and weights are torchvision's IMAGENET1K_V1 (evaluated bilinear 256 -> 224); its "
                  "IMAGENET1K_V2 file (https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth) reaches "
                  "72.154 evaluated with resize 232. Paper figures: 3.5M / 300M as quoted in GhostNet's table "
                  "(docs/reference.md §8); the authors' TF-slim table gives 71.8. timm's mobilenetv2_100 files load "
                  "through ghostnets.models.mobilenetv2.timm_to_torchvision."),
        "mobilenetv2_140": _variant(1.4, 6_108_776, 582_195_824, (6.06, 582, 75.0, 92.5),
                                    notes=_SLIM.format(w="1.4")),
    },
    paper="Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018",
    arxiv="https://arxiv.org/abs/1801.04381",
    code="https://github.com/pytorch/vision/blob/main/torchvision/models/mobilenetv2.py",
    recipe="mobilenetv2",
    notes="torchvision's layout and counts (features.i, classifier.1; its state dicts load strictly). deploy=True "
          "folds every BatchNorm (no LayerNorm in this family). The recipe is torchvision's (references/"
          "classification, vision PR #1203), with which its IMAGENET1K_V1 weights were trained.",
    eval_transform=TORCHVISION_EVAL,
)

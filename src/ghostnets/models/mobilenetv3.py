"""MobileNetV3 (Howard et al., "Searching for MobileNetV3", ICCV 2019, arXiv 1905.02244; Tables 1 and 2) in
torchvision's layout, so torchvision's weights load as they are and give torchvision's logits (docs/reference.md
§15): the baselines GhostNet (arXiv 1911.11907, Table 7) is judged against.

``features.0`` (3x3 s2 conv, BN, h-swish) -> ``features.1..N`` (bottlenecks, :class:`MobileNetV3Block`) ->
``features.N+1`` (1x1 conv to 6x the last width, BN, h-swish) -> avg pool -> ``classifier`` (``0``: Linear to
1280 / 1024, ``1``: h-swish, ``2``: dropout 0.2, ``3``: Linear). Widths scale as torchvision's ``width_mult``:
``make_divisible(c * width, 8)`` for every table width and the head's. timm's files of the same names load too: their
keys are mapped (:func:`timm_to_torchvision`) on load.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..data.transforms import TORCHVISION_EVAL
from ..layers.channels import make_divisible
from ..layers.conv_bn_act import init_conv_weights
from ..layers.mobilenetv3_block import MBV3_NORM, MobileNetV3Block, conv_norm_act
from .base import ClassifierNet
from .family import Family, Variant, Weights

# Tables 1 and 2 (torchvision's _mobilenet_v3_conf): in, kernel, expanded, out, SE, activation (RE/HS), stride
Row = tuple[int, int, int, int, bool, str, int]
LARGE: tuple[Row, ...] = (
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
)
SMALL: tuple[Row, ...] = (
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
)
ARCHS: dict[str, tuple[tuple[Row, ...], int]] = {"large": (LARGE, 1280), "small": (SMALL, 1024)}  # table, head width
ACTIVATIONS = {"RE": nn.ReLU, "HS": nn.Hardswish}


class MobileNetV3(ClassifierNet):
    """MobileNetV3-Large/Small with torchvision's attribute names: ``features.{0..N+1}``, ``avgpool``,
    ``classifier.{0,3}``. ``forward_head(pre_logits=True)`` gives the 1280 / 1024 hidden features (timm's)."""

    stem_pattern = r"^features\.0\."
    stage_pattern = r"^features\.(\d+)"
    supports_features_only = True

    def __init__(
        self, arch: str = "large", *, width: float = 1.0, num_classes: int = 1000, in_chans: int = 3,
        drop_rate: float = 0.2, drop_path_rate: float = 0.0, deploy: bool = False, channels_last: bool = True,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, width=width, deploy=deploy,
                         channels_last=channels_last, drop_path_rate=drop_path_rate, default_input_size=(224, 224))
        if arch not in ARCHS:
            raise ValueError(f"unknown MobileNetV3 arch {arch!r}; pass arch= one of {sorted(ARCHS)}")
        table, head_chs = ARCHS[arch]

        def ch(c: int) -> int:
            return make_divisible(c * width, 8)  # torchvision's InvertedResidualConfig.adjust_channels

        stem_chs = ch(table[0][0])
        layers: list[nn.Module] = [conv_norm_act(in_chans, stem_chs, 3, 2, act_layer=nn.Hardswish, deploy=deploy)]
        self.feature_info = []
        reduction = 2
        for i, (c_in, k, exp, out, se, act, stride) in enumerate(table, start=1):
            if stride == 2:  # the last module at the previous stride is a tap
                self.feature_info.append(dict(num_chs=ch(c_in), reduction=reduction, module=f"features.{i - 1}"))
                reduction *= 2
            layers.append(MobileNetV3Block(
                ch(c_in), ch(exp), ch(out), k, stride, se_ratio=0.25 if se else 0.0, act_layer=ACTIVATIONS[act],
                drop_path=drop_path_rate * (i - 1) / len(table), deploy=deploy))
        last_in = ch(table[-1][3])
        layers.append(conv_norm_act(last_in, 6 * last_in, 1, act_layer=nn.Hardswish, deploy=deploy))
        self.feature_info.append(dict(num_chs=6 * last_in, reduction=reduction, module=f"features.{len(layers) - 1}"))
        self.features = nn.Sequential(*layers)
        self.num_features, self.hidden_chs = 6 * last_in, ch(head_chs)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(self.num_features, self.hidden_chs), nn.Hardswish(inplace=True),
                                        nn.Dropout(p=drop_rate, inplace=True), self.make_head(num_classes))
        init_conv_weights(self)  # torchvision's: He fan-out convs, zero biases, BN ones/zeros
        nn.init.normal_(self.classifier[0].weight, 0.0, 0.01)
        nn.init.zeros_(self.classifier[0].bias)
        self.use_channels_last(channels_last)

    @property
    def head_hidden_size(self) -> int:
        return self.hidden_chs

    def make_head(self, num_classes: int) -> nn.Module:
        """torchvision's classifier init: N(0, 0.01) weights, zero bias."""
        head = super().make_head(num_classes)
        if isinstance(head, nn.Linear):
            nn.init.normal_(head.weight, 0.0, 0.01)
            nn.init.zeros_(head.bias)
        return head

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.classifier[3]

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        """A fresh last Linear (``classifier.3``) for ``num_classes``; the hidden layer ``classifier.0`` is kept."""
        hidden = self.classifier
        super().reset_classifier(num_classes, global_pool)  # sets self.classifier to the new last layer
        hidden[3], self.classifier = self.classifier, hidden

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return {"stem": self.stem_pattern, "blocks": self.stage_pattern}

    def stages(self) -> list[tuple[str, nn.Module]]:
        """Every ``features.i`` after the stem (the stem too: small's first tap, stride 2, is the stem itself)."""
        return [(f"features.{i}", m) for i, m in enumerate(self.features)]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """Only the input check: the stem conv is ``features.0``, the first of ``stages()``."""
        return self.prepare(x, self.features[0][0].weight)

    def forward_pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[1](self.classifier[0](torch.flatten(self.avgpool(x), 1)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.forward_pre_logits(x)
        if pre_logits:
            return x
        return self.classifier[3](self.classifier[2](x))  # classifier.2: Dropout(drop_rate), torchvision's place

    def fuse(self) -> MobileNetV3:
        """The walker in :func:`ghostnets.reparameterize` has fused the stem, every block and the last conv."""
        self.deploy = True
        return self.use_channels_last(self.channels_last)


def mobilenetv3(arch: str = "large", **kwargs) -> MobileNetV3:
    """MobileNetV3-Large (``arch="large"``) or -Small; ``width`` is torchvision's ``width_mult``."""
    return MobileNetV3(arch, **kwargs)


# ----------------------------------------------------------------------------------------- timm's files, mapped

_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.([^.]+)\.(.+)$")
# per timm block type, its modules in forward order: a conv + its BN is one torchvision unit, the SE another
_TIMM_UNITS = {"ir": (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("se",), ("conv_pwl", "bn3")),
               "ds": (("conv_dw", "bn1"), ("se",), ("conv_pw", "bn2")), "cn": (("conv", "bn1"),)}
_TIMM_SE = {"conv_reduce": "fc1", "conv_expand": "fc2"}
TIMM_BN_EPS, TV_BN_EPS = 1e-5, MBV3_NORM.keywords["eps"]


def is_timm_mobilenetv3(state_dict: dict) -> bool:
    """timm's MobileNetV3 layout: ``conv_stem``, inverted residuals with ``conv_pwl``, a biased ``conv_head`` and
    no ``bn2`` (GhostNet has ``ghost1``/``ghost2`` blocks, timm's MobileNetV2/EfficientNet an unbiased head + bn2)."""
    return {"conv_stem.weight", "blocks.0.0.conv_dw.weight", "blocks.1.0.conv_pwl.weight", "conv_head.bias"} <= set(
        state_dict) and "bn2.weight" not in state_dict


def _eps_shifted(key: str, value: torch.Tensor) -> torch.Tensor:
    """A timm BatchNorm's ``running_var`` for torchvision's eps: ``var + 1e-5 == var' + 1e-3``."""
    return value + (TIMM_BN_EPS - TV_BN_EPS) if key.endswith("running_var") else value


def timm_to_torchvision(state_dict: dict) -> dict:
    """timm's ``mobilenetv3_{large,small}_*`` state dict in torchvision's layout; any other dict as it is.

    ``conv_stem/bn1`` -> ``features.0``; ``blocks.s.j`` in order -> ``features.i.block.u`` (units as in
    ``_TIMM_UNITS``), the last stage (timm's ``ConvBnAct``) -> ``features.N``; ``conv_head`` (a 1x1 conv on the
    pooled map) -> ``classifier.0`` (the same Linear); ``classifier`` -> ``classifier.3``. timm's BatchNorms use eps
    1e-5, torchvision's 1e-3: ``running_var`` is shifted by 1e-5 - 1e-3 so ``var + eps`` (and the function) is timm's.
    """
    if not is_timm_mobilenetv3(state_dict):
        return state_dict
    blocks: dict[tuple[int, int], dict[str, dict[str, torch.Tensor]]] = {}
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        m = _TIMM_BLOCK.match(key)
        if m:
            blocks.setdefault((int(m[1]), int(m[2])), {}).setdefault(m[3], {})[m[4]] = value
        elif key.startswith("conv_stem."):
            out["features.0.0." + key.split(".", 1)[1]] = value
        elif key.startswith("bn1."):
            out["features.0.1." + key.split(".", 1)[1]] = _eps_shifted(key, value)
        elif key.startswith("conv_head."):
            out["classifier.0." + key.split(".", 1)[1]] = value.flatten(1) if value.ndim == 4 else value
        elif key.startswith("classifier."):
            out["classifier.3." + key.split(".", 1)[1]] = value
        else:
            out[key] = value
    for i, (_, modules) in enumerate(sorted(blocks.items()), start=1):
        kind = "ir" if "conv_pwl" in modules else "cn" if "conv" in modules else "ds"
        units = [u for u in _TIMM_UNITS[kind] if u[0] in modules]
        for u, names in enumerate(units):
            prefix = f"features.{i}." if kind == "cn" else f"features.{i}.block.{u}."
            for slot, name in enumerate(names):
                for leaf, value in modules[name].items():
                    if name == "se":
                        sub, rest = leaf.split(".", 1)
                        out[f"{prefix}{_TIMM_SE[sub]}.{rest}"] = value
                        continue
                    out[f"{prefix}{slot}.{leaf}"] = _eps_shifted(leaf, value) if slot == 1 else value
    return out


# --------------------------------------------------------------------------------------------------- the cards

_TV = "https://download.pytorch.org/models/"
_EPS_NOTE = ("timm's files of the same name (conv_stem/blocks/conv_head layout, BN eps 1e-5) load too: mapped to "
             "this layout with running_var shifted to torchvision's eps 1e-3, the same function.")

_075_NOTE = ("counts are torchvision's width_mult=0.75, which scales the head's hidden width too; the paper's "
             "model and timm's of this name ({1:,} params) keep it at {0} and round other widths their own way. No "
             "published weights in this layout.")


def _variant(arch: str, width: float, params: int, madds: int, paper: tuple[float, float], top1: float,
             top5: float | None = None, weights: Weights | None = None, notes: str = "") -> Variant:
    return Variant(width=width, params=params, madds=madds, paper_params=paper[0], paper_madds=paper[1], top1=top1,
                   top5=top5, builder_kwargs=dict(arch=arch), weights=weights, notes=notes)


FAMILY = Family(
    name="mobilenetv3",
    builder=mobilenetv3,
    variants={
        "mobilenetv3_large_075": _variant("large", 0.75, 3_377_576, 140_033_816, (4.0, 155), 73.3,
                                          notes="top-1 is the paper's (Table 3); " + _075_NOTE.format(1280, 3_993_528)),
        "mobilenetv3_large_100": _variant(
            "large", 1.0, 5_483_032, 216_589_760, (5.4, 219), 74.042, 91.340,
            Weights(url=_TV + "mobilenet_v3_large-8738ca79.pth", top1=74.042),
            notes="top-1/top-5 are torchvision's IMAGENET1K_V1 (the paper: 75.2); torchvision's IMAGENET1K_V2 "
                  f"({_TV}mobilenet_v3_large-5c1a4163.pth) reaches 75.274 evaluated with bilinear resize 232 -> "
                  f"crop 224. {_EPS_NOTE}"),
        "mobilenetv3_small_075": _variant("small", 0.75, 1_653_920, 39_115_576, (2.4, 44), 65.4,
                                          notes="top-1 is the paper's (Table 4); " + _075_NOTE.format(1024, 2_041_872)),
        "mobilenetv3_small_100": _variant(
            "small", 1.0, 2_542_856, 56_510_400, (2.5, 56), 67.668, 87.402,
            Weights(url=_TV + "mobilenet_v3_small-047dcff4.pth", top1=67.668),
            notes=f"top-1/top-5 are torchvision's IMAGENET1K_V1 (the paper: 67.4). {_EPS_NOTE}"),
    },
    paper="Howard et al., Searching for MobileNetV3, ICCV 2019",
    arxiv="https://arxiv.org/abs/1905.02244",
    code="https://github.com/pytorch/vision/blob/main/torchvision/models/mobilenetv3.py",
    recipe="pytorch_imagenet",
    notes="torchvision's layout and weights (the state dicts load strictly); deploy form: every BatchNorm folded into "
          "its conv (the classifier has none); the SE stays.",
    eval_transform=TORCHVISION_EVAL,
    state_dict_filter=timm_to_torchvision,
)

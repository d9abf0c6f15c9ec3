"""EdgeNeXt (Maaz et al., "EdgeNeXt: Efficiently Amalgamated CNN-Transformer Architecture for Mobile Vision
Applications", ECCV-W CADL 2022, arXiv 2206.10589; docs/reference.md "EdgeNeXt").

stem (4x4 s4 conv + LayerNorm2d) -> 4 stages (stages 2-4 entered by LayerNorm2d + 2x2 s2 conv), each
``depth - global`` conv encoders (kernels 3, 5, 7, 9) then ``global`` SDTA encoders at its end -> global average pool
-> LayerNorm -> dropout -> linear. Module names are timm's (``stem``, ``stages.i.downsample``, ``stages.i.blocks.j``,
``head.norm``, ``head.fc``), so timm's state dicts load as they are; :func:`official_names` maps the official
release files (``downsample_layers``, ``dwconv``, ``pwconv1/2``, ``norm``, ``head``) on reading.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..data.transforms import InputSpec
from ..layers.edgenext_conv import ConvEncoder, Downsample
from ..layers.layer_norm import LayerNorm2d
from ..layers.sdta import SDTAEncoder
from .base import ClassifierNet
from .family import Family, Variant, Weights

# The official constructors (models/model.py): depths, dims, heads; the settings all four share
CONFIGS: dict[str, tuple[tuple[int, ...], tuple[int, ...], int]] = {
    "xx_small": ((2, 2, 6, 2), (24, 48, 88, 168), 4),
    "x_small": ((3, 3, 9, 3), (32, 64, 100, 192), 4),
    "small": ((3, 3, 9, 3), (48, 96, 160, 304), 8),
    "base": ((3, 3, 9, 3), (80, 160, 288, 584), 8),
}
GLOBAL_BLOCKS = (0, 1, 1, 1)  # SDTA encoders at the end of each stage
KERNEL_SIZES = (3, 5, 7, 9)  # the conv encoders' depthwise kernels
D2_SCALES = (2, 2, 3, 4)  # SDTA channel splits
USE_POS_EMB = (False, True, False, False)  # Fourier positional encoding in the SDTA of stage 2 only
RELEASE = "https://github.com/mmaaz60/EdgeNeXt/releases/download/"
# The official eval (datasets.py): bicubic resize to int(256 / 0.875) = 292, centre crop 256
EDGENEXT_EVAL = InputSpec.from_crop_pct(256, 224 / 256)


class EdgeNeXtStage(nn.Module):
    """One stage: ``downsample`` (identity in stage 1) then ``blocks`` (conv encoders, then SDTA encoders)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, depth: int, n_global: int, *, kernel_size: int,
                 num_heads: int, scales: int, use_pos_emb: bool, drop_path: list[float]) -> None:
        super().__init__()
        if not 0 <= n_global <= depth:
            raise ValueError(f"a stage of {depth} blocks cannot end in {n_global} SDTA encoders")
        if stride == 1 and in_chs != out_chs:
            raise ValueError(f"stage 1 keeps the stem's width: dims[0] must be the stem's {in_chs}, got {out_chs}")
        self.downsample = Downsample(in_chs, out_chs) if stride == 2 else nn.Identity()
        blocks = [ConvEncoder(out_chs, kernel_size, drop_path=drop_path[j]) for j in range(depth - n_global)]
        blocks += [SDTAEncoder(out_chs, num_heads=num_heads, scales=scales, use_pos_emb=use_pos_emb,
                               drop_path=drop_path[j]) for j in range(depth - n_global, depth)]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class NormLinearHead(nn.Module):
    """timm's ``NormMlpClassifierHead`` of EdgeNeXt: ``global_pool`` -> ``norm`` (the official final LayerNorm) ->
    flatten -> ``fc``. :class:`EdgeNeXt` runs it as pre-logits (pool, norm) -> dropout -> classifier."""

    def __init__(self, norm: nn.Module, fc: nn.Module) -> None:
        super().__init__()
        self.global_pool, self.norm, self.fc = nn.AdaptiveAvgPool2d(1), norm, fc

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.norm(self.global_pool(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pre_logits(x))


def _per_stage(name: str, value: int | tuple, n: int = 4) -> tuple:
    value = (value,) * n if isinstance(value, (int, bool)) else tuple(value)
    if len(value) != n:
        raise ValueError(f"{name} needs one entry per stage ({n}), got {value}")
    return value


class EdgeNeXt(ClassifierNet):
    """EdgeNeXt in timm's layout (``stem``, ``stages.0..3``, ``head.norm``, ``head.fc``). LayerNorm everywhere, no
    BatchNorm: the deploy form is the training form."""

    head_name = "head"
    stem_pattern = r"^stem"
    stage_pattern = r"^stages\.(\d+)"
    supports_features_only = True

    def __init__(
        self, depths: tuple[int, ...], dims: tuple[int, ...], heads: int | tuple[int, ...] = 8, *,
        global_blocks: tuple[int, ...] = GLOBAL_BLOCKS, kernel_sizes: tuple[int, ...] = KERNEL_SIZES,
        d2_scales: tuple[int, ...] = D2_SCALES, use_pos_emb: tuple[bool, ...] = USE_POS_EMB, width: float = 1.0,
        num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
        deploy: bool = False, channels_last: bool = True,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, width=width, deploy=deploy,
                         channels_last=channels_last, drop_path_rate=drop_path_rate, default_input_size=(256, 256))
        if width != 1.0:
            raise ValueError(f"EdgeNeXt has no width multiplier (got width={width}): pick a variant "
                             f"(edgenext_{', edgenext_'.join(CONFIGS)}) or pass your own dims=")
        depths, dims, heads = _per_stage("depths", depths), _per_stage("dims", dims), _per_stage("heads", heads)
        per_stage = [_per_stage(n, v) for n, v in (("global_blocks", global_blocks), ("kernel_sizes", kernel_sizes),
                                                   ("d2_scales", d2_scales), ("use_pos_emb", use_pos_emb))]
        self.stem = nn.Sequential(nn.Conv2d(in_chans, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6))
        # the official per-block rule (on the CPU: a meta-device build has no values to read)
        rates = [r.item() for r in torch.linspace(0, drop_path_rate, sum(depths), device="cpu")]
        stages, in_chs, first, reduction = [], dims[0], 0, 4
        for i, (depth, dim, n_heads) in enumerate(zip(depths, dims, heads)):
            n_global, kernel, scales, pos = (v[i] for v in per_stage)
            stride = 1 if i == 0 else 2
            stages.append(EdgeNeXtStage(in_chs, dim, stride, depth, n_global, kernel_size=kernel, num_heads=n_heads,
                                        scales=scales, use_pos_emb=pos, drop_path=rates[first:first + depth]))
            in_chs, first, reduction = dim, first + depth, reduction * stride
            self.feature_info.append(dict(num_chs=dim, reduction=reduction, module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = dims[-1]
        self.head = self.make_head(num_classes)
        self._init_weights()
        self.use_channels_last(channels_last)

    def _init_weights(self) -> None:
        """The official init: truncated normal (std 0.02, cut at 2 std) for convs and linears, zero biases."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-0.04, b=0.04)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def make_head(self, num_classes: int) -> nn.Module:
        """The head with a fresh classifier; the final LayerNorm is kept when the head exists already."""
        norm = self.head.norm if "head" in self._modules else LayerNorm2d(self.num_features, eps=1e-6)
        return NormLinearHead(norm, super().make_head(num_classes))

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's groups: the stem, then stages (coarse) or each stage's downsample and blocks."""
        if coarse:
            return super().group_matcher(coarse=True)
        return {"stem": self.stem_pattern, "blocks": [(r"^stages\.(\d+)\.downsample", (0,)),
                                                      (r"^stages\.(\d+)\.blocks\.(\d+)", None)]}

    def stages(self) -> list[tuple[str, nn.Module]]:
        # the ``stages`` container lives in ``_modules`` (timm's name); this method shadows it as an attribute
        return [(f"stages.{i}", stage) for i, stage in enumerate(self._modules["stages"])]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(self.prepare(x, self.stem[0].weight))

    def forward_pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pool, then the final LayerNorm (``head.norm``), flattened: what ``head.fc`` reads."""
        return self.head.pre_logits(x)

    def fuse(self) -> EdgeNeXt:
        """Nothing to fold (LayerNorm normalises per position and stays); the deploy form is this model."""
        self.deploy = True
        return self


def edgenext(config: str | None = None, *, depths: tuple[int, ...] | None = None, dims: tuple[int, ...] | None = None,
             heads: int | tuple[int, ...] | None = None, **kwargs) -> EdgeNeXt:
    """EdgeNeXt of an official config (``"xx_small"``, ``"x_small"``, ``"small"``, ``"base"``) or your own
    ``depths``/``dims``/``heads`` (and ``global_blocks``, ``kernel_sizes``, ``d2_scales``, ``use_pos_emb``)."""
    if config is not None:
        if config not in CONFIGS:
            raise ValueError(f"unknown EdgeNeXt config {config!r}; the official ones are {', '.join(CONFIGS)}")
        if depths is not None or dims is not None:
            raise ValueError(f"give config={config!r} or depths=/dims=, not both")
        depths, dims, official_heads = CONFIGS[config]
        heads = official_heads if heads is None else heads
    elif depths is None or dims is None:
        raise ValueError(f"EdgeNeXt needs config= (one of {', '.join(CONFIGS)}) or both depths= and dims=")
    return EdgeNeXt(depths, dims, 8 if heads is None else heads, **kwargs)


_OFFICIAL_RENAMES = ((re.compile(r"^downsample_layers\.0\."), "stem."),
                     (re.compile(r"^downsample_layers\.(\d+)\."), r"stages.\1.downsample."),
                     (re.compile(r"^stages\.(\d+)\.(\d+)\."), r"stages.\1.blocks.\2."),
                     (re.compile(r"\.dwconv\."), ".conv_dw."),
                     (re.compile(r"\.pwconv([12])\."), r".mlp.fc\1."),
                     (re.compile(r"^head\."), "head.fc."),
                     (re.compile(r"^norm\."), "head.norm."))


def official_names(state_dict: dict) -> dict:
    """The official release files' names (``downsample_layers``, ``stages.i.j``, ``dwconv``, ``pwconv1/2``, final
    ``norm``, ``head``) as timm's; any other state dict passes unchanged (timm's own checkpoint_filter_fn rules)."""
    if "downsample_layers.0.0.weight" not in state_dict or "head.weight" not in state_dict:
        return state_dict
    out = {}
    for key, value in state_dict.items():
        for pattern, replacement in _OFFICIAL_RENAMES:
            key = pattern.sub(replacement, key)
        out[key] = value
    return out


def _variant(config: str, params: int, madds: int, paper: tuple[float, float], top1: float, release: str,
             notes: str = "") -> Variant:
    return Variant(width=1.0, params=params, madds=madds, paper_params=paper[0], paper_madds=paper[1], top1=top1,
                   builder_kwargs=dict(config=config), notes=notes,
                   weights=Weights(url=f"{RELEASE}{release}/edgenext_{config}.pth", top1=top1, use_ema=True))


_MADDS_NOTE = ("MAdds count every multiply-add torch's FlopCounterMode sees at 256x256: convs, linears and the "
               "transposed attention's two matmuls (the README's figure, from its own counter, is a little higher).")
FAMILY = Family(
    name="edgenext",
    builder=edgenext,
    variants={
        "edgenext_xx_small": _variant("xx_small", 1_327_216, 257_905_088, (1.33, 261), 71.23, "v1.0",
                                      "Trained without RandAugment, drop path 0 (official model.py)."),
        "edgenext_x_small": _variant("x_small", 2_336_804, 533_192_192, (2.34, 538), 74.96, "v1.0",
                                     "Trained without RandAugment, drop path 0 (official model.py)."),
        "edgenext_small": _variant("small", 5_586_832, 1_253_234_816, (5.59, 1260), 79.41, "v1.0",
                                   "USI-trained file (81.07): releases/download/v1.1/edgenext_small_usi.pth."),
        "edgenext_base": _variant("base", 18_511_292, 3_828_296_384, (18.51, 3840), 82.47, "v1.2",
                                  "USI (83.68): v1.2/edgenext_base_usi.pth; IN-21K pre-trained (83.31): "
                                  "v1.21/edgenext_base_IN21K.pth."),
    },
    paper="Maaz et al., EdgeNeXt: Efficiently Amalgamated CNN-Transformer Architecture for Mobile Vision "
          "Applications, ECCV-W CADL 2022",
    arxiv="https://arxiv.org/abs/2206.10589",
    code="https://github.com/mmaaz60/EdgeNeXt",
    recipe="edgenext",
    notes="ImageNet-1K top-1 of the official README at 256x256 (bicubic, crop 224/256). " + _MADDS_NOTE + " "
          "LayerNorm throughout and no BatchNorm: the deploy form is the training form (LayerNorm stays, it cannot "
          "fold). timm's layout and state dicts; the official release files (training checkpoints, their EMA "
          "weights are the published ones) load through the official-name mapping. The SDTA positional encoding "
          "is computed for any input size.",
    eval_transform=EDGENEXT_EVAL,
    state_dict_filter=official_names,
)

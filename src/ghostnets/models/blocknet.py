"""BlockNet: the network of the hardware-aware block evaluation's design space (Bonnaerens et al., arXiv
2208.12694; RegNet's AnyNet, Radosavovic et al., arXiv 2003.13678 Sec. 3): a stem, stages of ONE registered block
type, and a head, so that every block is judged inside the same skeleton.

``stem`` (3x3 conv, BN, ReLU to ``stem_chs``, by default the first stage's width; stride ``stem_stride``) -> stage
i: ``depths[i]`` blocks of ``create_block(block, ...)``, the first with stride ``strides[i]`` and width
``widths[i]``, each block taking the stage's ``kernel_sizes[i]``, ``expansions[i]`` and ``se_ratios[i]`` (None: the
block's own default) -> global average pool -> dropout -> linear. Any registered block (``ghostnets blocks
list``) fits; a width or kernel a block refuses is refused with the stage and block named. The names ``stem``,
``blocks.i.j`` and ``classifier`` are this project's own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..data.transforms import FASHION_MNIST_INPUT
from ..layers.block_registry import block_info, create_block
from ..layers.conv_bn_act import ConvSequence, activation, conv_norm
from .base import ClassifierNet, finish_plain_net
from .family import Family, Variant


def _per_stage(name: str, values: Sequence | None, stages: int) -> list:
    if values is None:
        return [None] * stages
    values = list(values)
    if len(values) != stages:
        raise ValueError(f"{name} gives {len(values)} values for {stages} stages (one per stage, or None for the "
                         "block's default)")
    return values


class BlockNet(ClassifierNet):
    """Stem -> stages of one block type -> pool -> classifier (module docstring)."""

    head_name = "classifier"
    stem_pattern = r"^stem\."
    stage_pattern = r"^blocks\.(\d+)"
    supports_features_only = True

    def __init__(
        self, *, block: str = "mbv2", depths: Sequence[int] = (1, 2, 2, 1), widths: Sequence[int] = (16, 24, 32, 64),
        strides: Sequence[int] = (1, 2, 2, 2), stem_chs: int | None = None, stem_stride: int = 1,
        kernel_sizes: Sequence[int | None] | None = None, expansions: Sequence[float | None] | None = None,
        se_ratios: Sequence[float | None] | None = None, width: float = 1.0, num_classes: int = 10,
        in_chans: int = 1, drop_rate: float = 0.0, drop_path_rate: float = 0.0, deploy: bool = False,
        channels_last: bool = True,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, width=width, deploy=False,
                         channels_last=channels_last, drop_path_rate=drop_path_rate, default_input_size=(32, 32))
        if width != 1.0:
            raise ValueError("a BlockNet's widths are given stage by stage (widths=...); width must stay 1.0")
        if drop_path_rate:
            raise ValueError("drop_path_rate: the shared block interface has no drop path (not every block takes "
                             "one); leave it 0 for a BlockNet")
        block_info(block)  # unknown names suggest close ones
        stages = len(depths)
        if not stages or len(widths) != stages or len(strides) != stages:
            raise ValueError(f"depths, widths and strides need one value per stage, got {len(depths)}, {len(widths)} "
                             f"and {len(strides)}")
        bad = [f"{n}={list(v)}" for n, v, low in (("depths", depths, 1), ("widths", widths, 1),
                                                  ("strides", strides, 1)) if any(int(x) != x or x < low for x in v)]
        stem_chs = int(widths[0]) if stem_chs is None else stem_chs
        if bad or stem_chs < 1 or stem_stride not in (1, 2) or any(s not in (1, 2) for s in strides):
            found = ", ".join(bad) or f"stem_chs={stem_chs}, stem_stride={stem_stride}, strides={list(strides)}"
            raise ValueError(f"depths and widths must be integers >= 1, strides and stem_stride 1 or 2, stem_chs >= 1; "
                             f"got {found}")
        kernel_sizes = _per_stage("kernel_sizes", kernel_sizes, stages)
        expansions = _per_stage("expansions", expansions, stages)
        se_ratios = _per_stage("se_ratios", se_ratios, stages)
        self.block_name = block
        self.stem = ConvSequence(*conv_norm(in_chans, stem_chs, 3, stem_stride), activation(nn.ReLU))
        in_chs, reduction, built = stem_chs, stem_stride, []
        for i, (depth, out_chs, stride) in enumerate(zip(depths, widths, strides)):
            keywords = {"kernel_size": kernel_sizes[i], "expansion": expansions[i], "se_ratio": se_ratios[i]}
            blocks = []
            for j in range(int(depth)):
                s = stride if j == 0 else 1
                try:
                    blocks.append(create_block(block, in_chs, int(out_chs), s, **keywords))
                except (ValueError, TypeError) as e:
                    raise ValueError(f"stage {i} block {j} ({block}, {in_chs} -> {out_chs} channels, stride {s}): "
                                     f"{e}") from None
                in_chs = int(out_chs)
            built.append(nn.Sequential(*blocks))
            reduction *= stride
            self.add_tap(in_chs, reduction, f"blocks.{i}")
        self.blocks = nn.ModuleList(built)
        finish_plain_net(self, in_chs, deploy)

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [(f"blocks.{i}", stage) for i, stage in enumerate(self.blocks)]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(self.prepare(x, self.stem[0].weight))

    def fuse(self) -> BlockNet:
        """The walker in :func:`ghostnets.reparameterize` has fused every block already."""
        self.deploy = True
        return self.use_channels_last(self.channels_last)


def blocknet(width: float = 1.0, **kwargs) -> BlockNet:
    """A BlockNet (module docstring); the design space's networks are ``create_model("blocknet", block=..., ...)``."""
    return BlockNet(width=width, **kwargs)


EXTRA_KWARGS = ("block", "depths", "widths", "strides", "stem_chs", "stem_stride", "kernel_sizes", "expansions",
                "se_ratios")

FAMILY = Family(
    name="blocknet",
    builder=blocknet,
    variants={
        # the default arguments: MobileNetV2's block, depths (1, 2, 2, 1), widths (16, 24, 32, 64), 1-channel 32x32
        # input, 10 classes. Counts recomputed from torchvision's own InvertedResidual in tests/test_blocknet.py.
        "blocknet": Variant(width=1.0, params=65_050, madds=11_440_768, paper_params=0.0, paper_madds=0.0,
                            top1=float("nan"),
                            notes="Not a published network: the skeleton of the block evaluation's design space "
                                  "(ghostnets blocks sweep); it has no paper figures and no weights."),
    },
    paper="Bonnaerens et al., Hardware-aware mobile building block evaluation for computer vision, Appl. Sci. 2022",
    arxiv="https://arxiv.org/abs/2208.12694",
    code="(this project: no official code was published)",
    recipe="blockeval",
    notes="One block type in a fixed skeleton (RegNet's AnyNet practice), any registered block; what `ghostnets "
          "blocks sweep` samples, trains and measures.",
    extra_kwargs=EXTRA_KWARGS,
    eval_transform=FASHION_MNIST_INPUT,
    dataset="Fashion-MNIST",
)

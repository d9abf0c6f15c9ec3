"""The skeleton GhostNet, GhostNetV2 and RepGhostNet share: stem, a table of bottleneck stages, 1x1 stage, head.

stem (3x3 s2 conv, BN, ReLU) -> ``blocks`` (one ``nn.Sequential`` per table row, then a 1x1 ConvBnAct) ->
global avg pool -> ``conv_head`` 1x1 to 1280 with bias and no BN -> ReLU -> flatten -> dropout -> ``classifier``
(GhostNet, arXiv 1911.11907, Table 1). Families differ only in their table, their block and their last width.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..layers import ConvBnAct, conv_norm, make_divisible
from ..layers.conv_bn_act import fold_named_pairs, init_conv_weights, is_identity
from ..layers.deploy_conv import fuse_relu
from .base import ClassifierNet
from .input_check import prepare_input

# One bottleneck per row: (dw kernel k, expansion (mid) channels, out channels, SE ratio, stride).
BlockRow = tuple[int, int, int, float, int]
StageTable = Sequence[Sequence[BlockRow]]
# block_fn(block_index, in_chs, mid_chs, out_chs, kernel, stride, se_ratio, drop_path, deploy) -> nn.Module
BlockFn = Callable[[int, int, int, int, int, int, float, float, bool], nn.Module]

HEAD_CHS = 1280


def fuse_stem(model: nn.Module) -> None:
    """Fold the stem BatchNorm into ``conv_stem`` and fuse its ReLU (shared by the classifier and feature nets)."""
    fold_named_pairs(model, [("conv_stem", "bn1")])
    model.conv_stem, model.act1 = fuse_relu(model.conv_stem, model.act1)


class GhostFamilyNet(ClassifierNet):
    """A GhostNet-style classifier built from a stage table (the shared API is :class:`ClassifierNet`'s)."""

    supports_features_only = True

    def __init__(
        self, table: StageTable, block_fn: BlockFn, final_chs: int, *, width: float = 1.0, num_classes: int = 1000,
        in_chans: int = 3, drop_rate: float = 0.2, drop_path_rate: float = 0.0, deploy: bool = False,
        channels_last: bool = True, he_init: bool = True,
    ) -> None:
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, width=width, deploy=deploy,
                         channels_last=channels_last, drop_path_rate=drop_path_rate, default_input_size=(224, 224))
        stem_chs = make_divisible(16 * width, 4)
        self.conv_stem, self.bn1 = conv_norm(in_chans, stem_chs, 3, 2, deploy=deploy)
        self.conv_stem, self.act1 = fuse_relu(self.conv_stem, nn.ReLU(inplace=True))

        n_blocks = sum(len(stage) for stage in table)
        stages: list[nn.Module] = []
        stage_info: list[dict] = []
        in_chs, reduction, index = stem_chs, 2, 0
        for stage in table:
            rows = []
            for k, exp, out, se_ratio, stride in stage:
                out_chs, mid_chs = make_divisible(out * width, 4), make_divisible(exp * width, 4)
                dpr = drop_path_rate * index / n_blocks
                rows.append(block_fn(index, in_chs, mid_chs, out_chs, k, stride, se_ratio, dpr, deploy))
                in_chs, reduction, index = out_chs, reduction * stride, index + 1
            stages.append(nn.Sequential(*rows))
            stage_info.append(dict(num_chs=in_chs, reduction=reduction, module=f"blocks.{len(stages) - 1}"))
        stages.append(nn.Sequential(ConvBnAct(in_chs, final_chs, 1, deploy=deploy)))
        stage_info.append(dict(num_chs=final_chs, reduction=reduction, module=f"blocks.{len(stages) - 1}"))
        self.blocks = nn.Sequential(*stages)
        # feature taps: the *last* stage at each reduction (detection/segmentation want the deepest map per stride)
        self.feature_info = [info for i, info in enumerate(stage_info)
                             if i + 1 == len(stage_info) or stage_info[i + 1]["reduction"] != info["reduction"]]
        self.num_features = final_chs

        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Conv2d(final_chs, HEAD_CHS, 1, bias=True)
        self.act2 = nn.ReLU(inplace=True)
        self.flatten = nn.Flatten(1)
        self.classifier = self.make_head(num_classes)
        if he_init:  # the official GhostNet/V2 init; GhostNetV3's code keeps PyTorch's defaults
            self._init_weights()
        self.use_channels_last(channels_last)

    @property
    def head_hidden_size(self) -> int:
        return HEAD_CHS

    def _init_weights(self) -> None:
        init_conv_weights(self)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def group_matcher(self, coarse: bool = False) -> dict:
        return {**super().group_matcher(coarse), "head": r"^conv_head"}

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [(f"blocks.{i}", stage) for i, stage in enumerate(self.blocks)]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_stem(prepare_input(x, self.in_chans, self.channels_last, self.conv_stem.weight))
        if not is_identity(self.bn1):
            x = self.bn1(x)
        return x if is_identity(self.act1) else self.act1(x)

    def forward_pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.act2(self.conv_head(self.global_pool(x))))

    def fuse(self) -> GhostFamilyNet:
        """Fold the stem BatchNorm; the walker in :func:`ghostnets.reparameterize` has fused every block already."""
        fuse_stem(self)
        self.deploy = True
        return self.use_channels_last(self.channels_last)

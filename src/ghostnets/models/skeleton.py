"""The skeleton GhostNet, GhostNetV2 and RepGhostNet share: stem, a table of bottleneck stages, 1x1 stage, head.

stem (3x3 s2 conv, BN, ReLU) -> ``blocks`` (one ``nn.Sequential`` per table row, then a 1x1 ConvBnAct) ->
global avg pool -> ``conv_head`` 1x1 to 1280 with bias and no BN -> ReLU -> flatten -> dropout -> ``classifier``
(GhostNet, arXiv 1911.11907, Table 1). Families differ only in their table, their block and their last width.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ConvBnAct, conv_norm, make_divisible
from ..layers.conv_bn_act import fold_named_pairs, init_conv_weights, is_identity
from ..layers.deploy_conv import fuse_relu
from .input_check import prepare_input

# One bottleneck per row: (dw kernel k, expansion (mid) channels, out channels, SE ratio, stride).
BlockRow = tuple[int, int, int, float, int]
StageTable = Sequence[Sequence[BlockRow]]
# block_fn(block_index, in_chs, mid_chs, out_chs, kernel, stride, se_ratio, drop_path, deploy) -> nn.Module
BlockFn = Callable[[int, int, int, int, int, int, float, float, bool], nn.Module]

HEAD_CHS = 1280


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


ARGUMENT_RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "width": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "num_classes": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                    "an integer >= 0 (0: no classifier)"),
    "in_chans": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
    "drop_rate": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "drop_path_rate": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "deploy": (lambda v: isinstance(v, bool), "True or False"),
    "channels_last": (lambda v: isinstance(v, bool), "True or False"),
}


def check_arguments(**arguments: object) -> None:
    """Raise one ``ValueError`` naming every argument that is out of its range."""
    problems = [f"{name} must be {what}, got {value!r}" for name, value in arguments.items()
                for valid, what in [ARGUMENT_RULES[name]] if not valid(value)]
    if problems:
        raise ValueError("; ".join(problems))


def fuse_stem(model: nn.Module) -> None:
    """Fold the stem BatchNorm into ``conv_stem`` and fuse its ReLU (shared by the classifier and feature nets)."""
    fold_named_pairs(model, [("conv_stem", "bn1")])
    model.conv_stem, model.act1 = fuse_relu(model.conv_stem, model.act1)


class GhostFamilyNet(nn.Module):
    """A GhostNet-style classifier built from a stage table, with the model API users know from timm."""

    def __init__(
        self, table: StageTable, block_fn: BlockFn, final_chs: int, *, width: float = 1.0, num_classes: int = 1000,
        in_chans: int = 3, drop_rate: float = 0.2, drop_path_rate: float = 0.0, deploy: bool = False,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        check_arguments(width=width, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         drop_path_rate=drop_path_rate, deploy=deploy, channels_last=channels_last)
        self.in_chans, self.num_classes, self.drop_rate, self.deploy = in_chans, num_classes, drop_rate, deploy
        self.channels_last = channels_last
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
        self.head_hidden_size = HEAD_CHS

        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Conv2d(final_chs, HEAD_CHS, 1, bias=True)
        self.act2 = nn.ReLU(inplace=True)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(HEAD_CHS, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()
        self.use_channels_last(channels_last)

    def _init_weights(self) -> None:
        init_conv_weights(self)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def use_channels_last(self, enable: bool = True) -> GhostFamilyNet:
        """Store weights and run activations channels_last (NHWC; inputs are converted on entry) or not.

        The default: on CPU, oneDNN's depthwise and 1x1 convolutions run 20-40 % faster in NHWC, for inference and
        for training alike, and channels_last is the recommended format for mixed precision on GPUs.
        """
        self.channels_last = enable
        return self.to(memory_format=torch.channels_last if enable else torch.contiguous_format)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_stem(prepare_input(x, self.in_chans, self.channels_last, self.conv_stem.weight))
        if not is_identity(self.bn1):
            x = self.bn1(x)
        return x if is_identity(self.act1) else self.act1(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, num_features, ceil(H / 32), ceil(W / 32))."""
        return self.blocks(self.forward_stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.flatten(self.act2(self.conv_head(self.global_pool(x))))
        if pre_logits:
            return x
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        """Replace the classifier with a fresh ``Linear(1280, num_classes)`` (``nn.Identity`` for 0)."""
        if global_pool != "avg":
            raise ValueError(f"only global_pool='avg' is supported (the papers' head), got {global_pool!r}")
        check_arguments(num_classes=num_classes)
        self.num_classes = num_classes
        self.classifier = nn.Linear(HEAD_CHS, num_classes) if num_classes > 0 else nn.Identity()
        if hasattr(self, "model_kwargs"):  # what save_checkpoint records to rebuild the model
            self.model_kwargs = {**self.model_kwargs, "num_classes": num_classes}

    def fuse(self) -> GhostFamilyNet:
        """Fold the stem BatchNorm; the walker in :func:`ghostnets.reparameterize` has fused every block already."""
        fuse_stem(self)
        self.deploy = True
        return self.use_channels_last(self.channels_last)

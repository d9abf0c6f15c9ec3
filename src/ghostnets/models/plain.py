"""What the plug-and-play baselines (ResNet, VGG) share: the model API users know from timm, around any backbone.

Their convolutions come from a ``conv_layer`` factory (``nn.Conv2d`` or :class:`~ghostnets.layers.GhostConv2d`
with a ratio), so a baseline and its Ghost version are one class built two ways (GhostNet, arXiv 1911.11907, §4.1).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.conv_bn_act import fuse_tree, init_conv_weights
from ..layers.ghost_conv import GhostConv2d
from .input_check import prepare_input
from .skeleton import check_arguments

ConvFactory = Callable[..., nn.Module]


def conv_factory(ghost_ratio: int | None, dw_size: int = 3) -> ConvFactory:
    """``nn.Conv2d`` for the baseline, or the Ghost module at ratio s taking its place (REFERENCE.md §7)."""
    return nn.Conv2d if ghost_ratio is None else partial(GhostConv2d, ratio=ghost_ratio, dw_size=dw_size)


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class PlainClassifier(nn.Module):
    """Backbone (``forward_features``) -> global average pool -> dropout -> linear ``head_name`` classifier."""

    head_name = "classifier"

    def _setup(self, *, num_classes: int, in_chans: int, drop_rate: float, width: float, deploy: bool,
               channels_last: bool, drop_path_rate: float, input_size: tuple[int, int]) -> None:
        check_arguments(width=width, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                        drop_path_rate=drop_path_rate, deploy=deploy, channels_last=channels_last)
        self.num_classes, self.in_chans, self.drop_rate = num_classes, in_chans, drop_rate
        self.deploy, self.channels_last = False, channels_last
        self.default_input_size = input_size

    def _finish(self, num_features: int, deploy: bool) -> None:
        self.num_features = num_features
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        setattr(self, self.head_name, self.make_head(self.num_classes))
        init_conv_weights(self)  # BatchNorm and Linear keep PyTorch's (and torchvision's) defaults
        if deploy:  # built in training form, then folded: the deploy layout reparameterize produces
            fuse_tree(self)
        self.use_channels_last(self.channels_last)

    def make_head(self, num_classes: int) -> nn.Module:
        """The classifier after pooling: ``Linear(num_features, num_classes)``; ``nn.Identity`` for 0 classes."""
        return nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def prepare(self, x: torch.Tensor, first_weight: torch.Tensor) -> torch.Tensor:
        return prepare_input(x, self.in_chans, self.channels_last, first_weight)

    def use_channels_last(self, enable: bool = True) -> PlainClassifier:
        self.channels_last = enable
        return self.to(memory_format=torch.channels_last if enable else torch.contiguous_format)

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.head_name)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.global_pool(x), 1)
        if pre_logits:
            return x
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return self.get_classifier()(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        """Replace the classifier with a fresh one for ``num_classes`` (``nn.Identity`` for 0)."""
        if global_pool != "avg":
            raise ValueError(f"only global_pool='avg' is supported, got {global_pool!r}")
        check_arguments(num_classes=num_classes)
        self.num_classes = num_classes
        setattr(self, self.head_name, self.make_head(num_classes))
        if hasattr(self, "model_kwargs"):
            self.model_kwargs = {**self.model_kwargs, "num_classes": num_classes}

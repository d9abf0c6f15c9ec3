"""``features_only=True``: the feature maps of the last block at each stride, for detection and segmentation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..record import attach_record, record_of
from .skeleton import GhostFamilyNet, fuse_stem


class FeatureListNet(nn.Module):
    """Runs the stem and the stages up to the deepest requested tap; returns one map per ``out_indices`` entry.

    Keeps the backbone's module names (``conv_stem``, ``blocks.N``...) so backbone weights load unchanged.
    """

    def __init__(self, model: GhostFamilyNet, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        if not isinstance(model, GhostFamilyNet):
            raise ValueError(f"features_only is available for the GhostNet families (ghostnet*, ghostnetv2*, "
                             f"repghostnet*), not {type(model).__name__}; use model.forward_features(x) for its last "
                             "map")
        n_taps = len(model.feature_info)
        out_indices = tuple(range(n_taps)) if out_indices is None else tuple(out_indices)
        bad = [i for i in out_indices if not -n_taps <= i < n_taps]
        if bad or not out_indices:
            raise ValueError(f"out_indices must be taken from 0..{n_taps - 1} (strides "
                             f"{[f['reduction'] for f in model.feature_info]}), got {out_indices}")
        out_indices = tuple(sorted({i % n_taps for i in out_indices}))
        self.feature_info = [dict(model.feature_info[i], index=i) for i in out_indices]
        self.out_indices = out_indices
        self.in_chans, self.deploy, self.channels_last = model.in_chans, model.deploy, model.channels_last
        attach_record(self, record_of(model))  # what save_checkpoint records to rebuild it
        self.conv_stem, self.bn1, self.act1 = model.conv_stem, model.bn1, model.act1
        taps = [int(info["module"].split(".")[1]) for info in self.feature_info]
        self.blocks = model.blocks[: max(taps) + 1]
        self._taps = frozenset(taps)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = GhostFamilyNet.forward_stem(self, x)  # same attributes: conv_stem, bn1, act1, in_chans
        features = []
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if i in self._taps:
                features.append(x)
        return features

    def fuse(self) -> FeatureListNet:
        fuse_stem(self)
        self.deploy = True
        return self.to(memory_format=torch.channels_last) if self.channels_last else self

"""``features_only=True``: the feature maps of the last block at each stride, for detection and segmentation."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from ..record import attach_record, record_of
from .base import ClassifierNet


class FeatureListNet(nn.Module):
    """Runs the stem and the stages up to the deepest requested tap; returns one map per ``out_indices`` entry.

    Keeps the backbone's module names (``conv_stem``, ``blocks.N``; ``conv1``, ``layerN``; ``stem``,
    ``trunk_output.blockN``) so backbone weights load unchanged. The family's own ``forward_stem`` and ``fuse`` run on
    it: it holds the same stem attributes (``ClassifierNet.supports_features_only`` says a family's do).
    """

    prepare = ClassifierNet.prepare
    use_channels_last = ClassifierNet.use_channels_last

    def __init__(self, model: ClassifierNet, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        if not (isinstance(model, ClassifierNet) and model.supports_features_only):
            raise ValueError(f"features_only is not available for {type(model).__name__} (its stages are not a list "
                             "of modules a feature net can take over: the CIFAR ResNets and VGG, ghostified or pruned "
                             "models); use model.forward_features(x) for its last map, or "
                             "model.forward_intermediates(x) where the model has it")
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
        self._family = type(model)
        names = [name for name, _ in model.stages()]
        taps = [info["module"] for info in self.feature_info]
        self._stages = names[: max(map(names.index, taps)) + 1]
        self._taps = frozenset(taps)
        self._adopt_backbone(model, names)

    def _adopt_backbone(self, model: ClassifierNet, stage_names: list[str]) -> None:
        """Register the model's stem and its stages up to the deepest tap under their own names (a container of
        stages, such as ``blocks``, truncated); the children after the last stage (pooling, head) are left out."""
        kept = set(self._stages)

        def holds(name: str) -> list[str]:
            return [s for s in stage_names if s == name or s.startswith(name + ".")]

        children = list(model.named_children())
        last = max(i for i, (name, _) in enumerate(children) if holds(name))
        for name, child in children[: last + 1]:
            inside = holds(name)
            if inside and inside != [name]:
                child = nn.Sequential(OrderedDict((n, m) for n, m in child.named_children() if f"{name}.{n}" in kept))
            if inside and not any(s in kept for s in inside):
                continue
            self.add_module(name, child)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self._family.forward_stem(self, x)  # the same stem attributes, in_chans and channels_last
        features = []
        for name in self._stages:
            x = self.get_submodule(name)(x)
            if name in self._taps:
                features.append(x)
        return features

    def fuse(self) -> FeatureListNet:
        """The family's ``fuse()`` (the stem's fold), run on this net; the walker has fused every stage already."""
        return self._family.fuse(self)

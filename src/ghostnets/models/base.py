"""The one classifier base every family builds on: the model API users know from timm, in timm's method order.

A family provides its stem (``forward_stem``), its stages (``stages()``: named modules run in order, the feature taps
among them), the layers between the last stage and the classifier (``forward_pre_logits``) and ``group_matcher``'s
patterns; the base gives ``set_grad_checkpointing``, ``get_classifier``/``reset_classifier``,
``forward_intermediates``, ``forward_features``, ``forward_head``, ``forward`` and the channels_last switch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers.conv_bn_act import fuse_tree, init_conv_weights
from ..layers.graph_capture import capturing_graph
from .input_check import prepare_input


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


class ClassifierNet(nn.Module):
    """Stem -> stages -> global average pool -> [family's pre-logits layers] -> dropout -> linear classifier."""

    head_name = "classifier"  # the attribute holding the classifier (``fc`` in torchvision's ResNet layout)
    stem_pattern = r"^conv_stem|^bn1"  # group_matcher: parameters of the stem
    stage_pattern = r"^blocks\.(\d+)"  # a stage; with "\.(\d+)" appended, a block of it
    # features_only (FeatureListNet): the stem attributes and the stages hold every module forward_stem, the stages and
    # fuse() touch, and the children registered after the last stage are the head's only
    supports_features_only = False

    def __init__(self, *, num_classes: int, in_chans: int, drop_rate: float, width: float, deploy: bool,
                 channels_last: bool, drop_path_rate: float, default_input_size: tuple[int, int]) -> None:
        super().__init__()
        check_arguments(width=width, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                        drop_path_rate=drop_path_rate, deploy=deploy, channels_last=channels_last)
        self.num_classes, self.in_chans, self.drop_rate = num_classes, in_chans, drop_rate
        self.deploy, self.channels_last = deploy, channels_last
        self.default_input_size = default_input_size
        self.grad_checkpointing = False
        self.feature_info: list[dict] = []

    # ------------------------------------------------------------------------------------------- what a family gives

    def stages(self) -> list[tuple[str, nn.Module]]:
        """The modules between the stem and the head, in order, with their names (``feature_info`` taps among them)."""
        raise NotImplementedError

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features -> what the classifier reads (GhostNet's 1x1 ``conv_head``; plain nets: flatten)."""
        return torch.flatten(self.global_pool(x), 1)

    def make_head(self, num_classes: int) -> nn.Module:
        """The classifier: ``Linear(head_hidden_size, num_classes)``; ``nn.Identity`` for 0 classes."""
        return nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    @property
    def head_hidden_size(self) -> int:
        return self.num_features

    # --------------------------------------------------------------------------------------- timm's API, timm's order

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups for layer-wise LR decay (timm's format): the stem, then stages (coarse) or blocks."""
        blocks = self.stage_pattern if coarse else self.stage_pattern + r"\.(\d+)"
        return {"stem": self.stem_pattern, "blocks": blocks}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's activations in the backward pass instead of storing them (the same gradients,
        less memory; ``torch.utils.checkpoint``, non-reentrant, RNG state preserved for dropout and drop path)."""
        self.grad_checkpointing = bool(enable)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return getattr(self, self.head_name)

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        """Replace the classifier with a fresh one for ``num_classes`` (``nn.Identity`` for 0)."""
        if global_pool != "avg":
            raise ValueError(f"only global_pool='avg' is supported (the papers' head), got {global_pool!r}")
        check_arguments(num_classes=num_classes)
        self.num_classes = num_classes
        setattr(self, self.head_name, self.make_head(num_classes))
        record = self.__dict__.get("record")
        if record is not None:  # what save_checkpoint writes to rebuild the model
            self.record = record.updated(kwargs={"num_classes": num_classes})

    def forward_intermediates(
        self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
        stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The maps of the ``feature_info`` taps (the last block at each stride) picked by ``indices`` (``None``: all;
        ``n``: the last n; a list: those), and the final features unless ``intermediates_only``.

        ``stop_early`` stops after the deepest tap asked for. ``norm`` is accepted for timm's signature: these nets
        have no final norm.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        taps = self.tap_indices(indices)
        wanted = {self.feature_info[i]["module"] for i in taps}
        stages = self.stages()
        deepest = max(wanted, key=[name for name, _ in stages].index)
        intermediates = []
        x = self.forward_stem(x)
        for name, stage in stages:
            x = self._run_stage(stage, x)
            if name in wanted:
                intermediates.append(x)
            if stop_early and name == deepest:
                break
        return intermediates if intermediates_only else (x, intermediates)

    def tap_indices(self, indices: int | Sequence[int] | None) -> list[int]:
        """``forward_intermediates``' ``indices`` as sorted positions in ``feature_info``."""
        n = len(self.feature_info)
        if indices is None:
            return list(range(n))
        if isinstance(indices, int) and not isinstance(indices, bool):
            if not 1 <= indices <= n:
                raise ValueError(f"indices={indices}: take the last 1..{n} taps, or pass a list of tap indices")
            return list(range(n - indices, n))
        picked = list(indices)
        if not picked or any(isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n for i in picked):
            raise ValueError(f"indices must be taken from 0..{n - 1} (strides "
                             f"{[f['reduction'] for f in self.feature_info]}), got {indices}")
        return sorted({i % n for i in picked})

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, num_features, H / 32, W / 32), rounded up (CIFAR nets: / 8, VGG: / 32)."""
        x = self.forward_stem(x)
        for _, stage in self.stages():
            x = self._run_stage(stage, x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.forward_pre_logits(x)
        if pre_logits:
            return x
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return self.get_classifier()(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # ------------------------------------------------------------------------------------------------------ helpers

    def add_tap(self, num_chs: int, reduction: int, module: str) -> None:
        """Record ``module`` as the feature tap of its stride: the last block at each stride (timm's taps)."""
        tap = dict(num_chs=num_chs, reduction=reduction, module=module)
        if self.feature_info and self.feature_info[-1]["reduction"] == reduction:
            self.feature_info[-1] = tap
        else:
            self.feature_info.append(tap)

    def _run_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled() and not capturing_graph():
            return checkpoint(stage, x, use_reentrant=False)
        return stage(x)

    def prepare(self, x: torch.Tensor, first_weight: torch.Tensor) -> torch.Tensor:
        """Validate the input against the first conv's weight and give it the model's memory format."""
        return prepare_input(x, self.in_chans, self.channels_last, first_weight)

    def use_channels_last(self, enable: bool = True) -> ClassifierNet:
        """Store weights and run activations channels_last (NHWC; inputs are converted on entry) or not.

        The default: on CPU, oneDNN's depthwise and 1x1 convolutions run 20-40 % faster in NHWC, for inference and
        for training alike, and channels_last is the recommended format for mixed precision on GPUs.
        """
        self.channels_last = enable
        return self.to(memory_format=torch.channels_last if enable else torch.contiguous_format)


def finish_plain_net(model: ClassifierNet, num_features: int, deploy: bool) -> None:
    """The head and initialisation of the plain nets (ResNet, VGG); ``deploy``: fold them as ``reparameterize``
    does, so deploy files load into the model built directly."""
    model.num_features = num_features
    model.global_pool = nn.AdaptiveAvgPool2d(1)
    setattr(model, model.head_name, model.make_head(model.num_classes))
    init_conv_weights(model)  # BatchNorm and Linear keep PyTorch's (and torchvision's) defaults
    if deploy:
        fuse_tree(model)
    model.use_channels_last(model.channels_last)

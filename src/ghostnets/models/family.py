"""What a family file declares about itself: its builder, its published variants and their figures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from ..data.transforms import InputSpec


@dataclass(frozen=True, kw_only=True)
class Weights:
    """A published weight file of a variant: where it is, and the top-1 it was published with."""

    url: str  # the official release (or timm's file, where the paper's authors published through timm)
    top1: float  # as published with this file
    sha256: str | None = None  # once known; a download that does not match is deleted
    use_ema: bool | None = None  # a training checkpoint with both: which state dict the top-1 belongs to

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One published width of a family, with the paper's figures and the exact counts of the official code."""

    width: float
    params: int  # exact count of the official model class (docs/reference.md), training form
    madds: int  # exact multiply-adds at the card's input size (224x224; 32x32 for CIFAR models), conv + linear
    paper_params: float  # as printed in the paper, in millions
    paper_madds: float  # as printed in the paper, in millions
    top1: float
    top5: float | None = None
    # exact count of the official deploy files where they differ (RepGhost: its modules fused, other BNs kept;
    # ghostnets' own deploy form folds every BN and is smaller still)
    deploy_params: int | None = None
    recipe: str | None = None
    builder_kwargs: dict = field(default_factory=dict)  # fixed by the name (depth, Ghost ratio), not user-settable
    notes: str = ""  # where this variant's counts differ from the paper's, and why
    weights: Weights | None = None  # the published file, if any (create_model(name, pretrained=True))
    eval_transform: InputSpec | None = None  # where this variant's weights are evaluated otherwise than the family's


@dataclass(frozen=True)
class Family:
    """A model family: its builder ``builder(width=..., **kwargs) -> nn.Module`` and its published variants."""

    name: str
    builder: Callable[..., nn.Module]
    variants: dict[str, Variant]
    paper: str
    arxiv: str
    code: str
    recipe: str
    notes: str = ""
    extra_kwargs: tuple[str, ...] = field(default_factory=tuple)
    eval_transform: InputSpec = InputSpec()  # how the paper evaluates (default: ImageNet, bicubic 256 -> 224)
    dataset: str = "ImageNet"  # where the paper's top-1 was measured
    # checkpoint adapters (timm's checkpoint_filter_fn): drop keys of the official files that are no weights, and
    # lift an official deploy-form file into the training layout of a model of this family (None: not one)
    state_dict_filter: Callable[[dict], dict] | None = None
    lift_deploy_file: Callable[[nn.Module, dict], dict | None] | None = None

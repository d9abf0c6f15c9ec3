"""Model registration: every published variant is a name with a card (paper figures, eval transform, recipe)."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import asdict, dataclass

from torch import nn

from .errors import UnknownModelError
from .models import FAMILIES
from .models.family import Family, Variant
from .models.skeleton import ARGUMENT_RULES, check_arguments

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EvalTransform:
    """How the paper evaluates: resize the short side to ``resize``, centre-crop ``input_size``, normalise."""

    input_size: tuple[int, int, int] = (3, 224, 224)
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def resize(self) -> int:
        return int(self.input_size[-1] / self.crop_pct)


@dataclass(frozen=True)
class ModelCard:
    """What is known of a registered model: its family, the paper's figures, how to evaluate and train it."""

    name: str
    family: str
    width: float
    params: int
    madds: float
    paper_params_m: float
    paper_madds_m: float
    top1: float
    top5: float | None
    dataset: str
    deploy_params: int | None
    eval_transform: EvalTransform
    recipe: str
    paper: str
    arxiv: str
    code: str
    notes: str

    def as_dict(self) -> dict:
        return asdict(self)


_FAMILIES: dict[str, Family] = {}
_CARDS: dict[str, ModelCard] = {}


def _card(family: Family, name: str, v: Variant) -> ModelCard:
    return ModelCard(
        name=name, family=family.name, width=v.width, params=v.params, madds=v.madds, paper_params_m=v.paper_params,
        paper_madds_m=v.paper_madds, top1=v.top1, top5=v.top5, dataset=family.dataset, deploy_params=v.deploy_params,
        eval_transform=EvalTransform(**family.eval_transform), recipe=v.recipe or family.recipe, paper=family.paper,
        arxiv=family.arxiv, code=family.code, notes=" ".join(filter(None, [family.notes, v.notes])),
    )


def register_family(family: Family) -> None:
    """Register every published variant of ``family`` under its name."""
    for name, variant in family.variants.items():
        if name in _CARDS:
            raise ValueError(f"model name {name!r} is registered twice")
        _FAMILIES[name] = family
        _CARDS[name] = _card(family, name, variant)


for _family in FAMILIES:
    register_family(_family)


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching the shell-style ``pattern``, sorted."""
    return sorted(n for n in _CARDS if fnmatch.fnmatchcase(n, pattern))


def _lookup(name: str) -> str:
    if name in _CARDS:
        return name
    close = difflib.get_close_matches(name, list(_CARDS), n=4, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(f"unknown model {name!r}.{hint} `ghostnets list` (or list_models()) shows all "
                            f"{len(_CARDS)} registered names.")


def model_info(name: str) -> ModelCard:
    """The card of a registered model."""
    return _CARDS[_lookup(name)]


TORCHVISION_PREFIX = "torchvision:"


def build_torchvision(name: str, num_classes: int = 1000, **kwargs) -> nn.Module:
    """``torchvision:resnet50`` (any torchvision classification model) with random weights, as ghostnets records it."""
    import torchvision

    bare = name.removeprefix(TORCHVISION_PREFIX)
    known = torchvision.models.list_models(module=torchvision.models)
    if bare not in known:
        close = difflib.get_close_matches(bare, known, n=4, cutoff=0.5)
        hint = f" Did you mean {', '.join(TORCHVISION_PREFIX + c for c in close)}?" if close else ""
        raise UnknownModelError(f"unknown torchvision classification model {bare!r}.{hint}")
    if kwargs.get("deploy") or kwargs.get("in_chans", 3) != 3:
        raise ValueError(f"{name} is built by torchvision: it takes num_classes only (3 input channels, training "
                         "form; reparameterize() gives its deploy form)")
    model = torchvision.models.get_model(bare, weights=None, num_classes=num_classes)
    model.model_name, model.model_kwargs = TORCHVISION_PREFIX + bare, {"num_classes": num_classes}
    model.in_chans, model.num_classes = 3, num_classes
    return model


def eval_transform_for(name: str) -> EvalTransform:
    """How to evaluate ``name``: its card's transform, or torchvision's ImageNet one (bilinear 256 -> 224)."""
    if name.startswith(TORCHVISION_PREFIX):
        return EvalTransform(interpolation="bilinear")
    return model_info(name).eval_transform


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model with random weights; ``kwargs`` go to the family builder (``width`` overrides).

    ``torchvision:NAME`` builds torchvision's model of that name (to ghostify or prune it, or compare against it).
    """
    if isinstance(name, str) and name.startswith(TORCHVISION_PREFIX):
        return build_torchvision(name, **{k: v for k, v in kwargs.items() if k not in ("drop_rate", "drop_path_rate",
                                                                                       "channels_last")})
    name = _lookup(name)
    family = _FAMILIES[name]
    allowed = set(ARGUMENT_RULES) | set(family.extra_kwargs)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError(f"{name} takes no argument {', '.join(map(repr, unknown))}; it takes "
                        f"{', '.join(sorted(allowed))}" + (" (RepGhost ablations are repghostnet_* arguments)"
                                                           if set(unknown) & {"reparam_bn", "reparam_identity",
                                                                              "shortcut"} else ""))
    check_arguments(**{k: v for k, v in kwargs.items() if k in ARGUMENT_RULES})
    kwargs = {"width": _CARDS[name].width, **kwargs}
    model = family.builder(**family.variants[name].builder_kwargs, **kwargs)
    model.model_name = name
    model.model_kwargs = kwargs
    return model

"""Model registration: every published variant is a name with a card (paper figures, eval transform, recipe)."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import asdict, dataclass

from torch import nn

from .data.transforms import TORCHVISION_EVAL, InputSpec
from .errors import UnknownModelError
from .models import FAMILIES
from .models.base import ARGUMENT_RULES, check_arguments
from .models.family import Family, Variant, Weights
from .record import ModelRecord, attach_record


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
    eval_transform: InputSpec
    recipe: str
    paper: str
    arxiv: str
    code: str
    notes: str
    weights: Weights | None = None

    def as_dict(self) -> dict:
        return asdict(self)


_FAMILIES: dict[str, Family] = {}
_CARDS: dict[str, ModelCard] = {}


def _card(family: Family, name: str, v: Variant) -> ModelCard:
    return ModelCard(
        name=name, family=family.name, width=v.width, params=v.params, madds=v.madds, paper_params_m=v.paper_params,
        paper_madds_m=v.paper_madds, top1=v.top1, top5=v.top5, dataset=family.dataset, deploy_params=v.deploy_params,
        eval_transform=v.eval_transform or family.eval_transform, recipe=v.recipe or family.recipe, paper=family.paper,
        arxiv=family.arxiv, code=family.code, notes=" ".join(filter(None, [family.notes, v.notes])),
        weights=v.weights,
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


def state_dict_filters() -> list:
    """Every family's filter of the keys its official files carry beside the weights (checkpoint.py applies them)."""
    return list(dict.fromkeys(f.state_dict_filter for f in FAMILIES if f.state_dict_filter is not None))


def deploy_file_lifters() -> list:
    """Every family's lift of its official deploy-form files into the training layout."""
    return list(dict.fromkeys(f.lift_deploy_file for f in FAMILIES if f.lift_deploy_file is not None))


TORCHVISION_PREFIX = "torchvision:"
TORCHVISION_ALIAS = "tv:"  # the short spelling ``ghostnets bench`` has always taken
TORCHVISION_INPUT = TORCHVISION_EVAL  # torchvision's ImageNet eval: bilinear 256 -> 224 (the name tests know)


def canonical_name(name: str) -> str:
    """``tv:NAME`` -> ``torchvision:NAME``; every other name as it is."""
    return TORCHVISION_PREFIX + name[len(TORCHVISION_ALIAS):] if name.startswith(TORCHVISION_ALIAS) else name


def is_torchvision(name: str) -> bool:
    return canonical_name(name).startswith(TORCHVISION_PREFIX)


def build_torchvision(name: str, num_classes: int = 1000, **kwargs) -> nn.Module:
    """``torchvision:resnet50`` (any torchvision classification model) with random weights, as ghostnets records it."""
    import torchvision

    bare = canonical_name(name).removeprefix(TORCHVISION_PREFIX)
    known = torchvision.models.list_models(module=torchvision.models)
    if bare not in known:
        close = difflib.get_close_matches(bare, known, n=4, cutoff=0.5)
        hint = f" Did you mean {', '.join(TORCHVISION_PREFIX + c for c in close)}?" if close else ""
        raise UnknownModelError(f"unknown torchvision classification model {bare!r}.{hint}")
    if kwargs.get("deploy") or kwargs.get("in_chans", 3) != 3:
        raise ValueError(f"{name} is built by torchvision: it takes num_classes only (3 input channels, training "
                         "form; reparameterize() gives its deploy form)")
    model = torchvision.models.get_model(bare, weights=None, num_classes=num_classes)
    return attach_record(model, ModelRecord(TORCHVISION_PREFIX + bare, {"num_classes": num_classes},
                                            input=TORCHVISION_INPUT))


def eval_transform_for(name: str) -> InputSpec:
    """How to evaluate ``name``: its card's transform, or torchvision's ImageNet one (bilinear 256 -> 224)."""
    if is_torchvision(name):
        return TORCHVISION_INPUT
    return model_info(name).eval_transform


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model with random weights; ``kwargs`` go to the family builder (``width`` overrides).

    ``torchvision:NAME`` (or ``tv:NAME``) builds torchvision's model of that name (to ghostify or prune it, or to
    compare against it). The model carries its :class:`~ghostnets.record.ModelRecord` (name, arguments, input).
    """
    if isinstance(name, str) and is_torchvision(name):
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
    card_input = _CARDS[name].eval_transform  # another channel count: the card's transform does not apply
    spec = card_input if model.in_chans == card_input.channels else None
    return attach_record(model, ModelRecord(name, kwargs, input=spec, deploy=bool(kwargs.get("deploy", False))))

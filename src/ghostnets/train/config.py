"""Training configuration: a recipe file (YAML) plus ``key=value`` overrides, checked field by field."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from ..errors import GhostnetsError

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"


class ConfigError(GhostnetsError, ValueError):
    """A recipe or override that names an unknown field or holds a value of the wrong type."""


@dataclass
class TrainConfig:
    """Every knob of a training run. Names follow timm's ``train.py`` so its recipes read the same here."""

    # what to train, on what
    model: str = "ghostnet_100"
    model_kwargs: dict = field(default_factory=dict)  # width, reparam_bn, ... passed to create_model
    initial_checkpoint: str | None = None  # start from these weights (and the ghostified/pruned model they record)
    # quantization-aware training (train/qat.py, ghostnets train --qat FILE): fine-tune these float weights' deploy
    # form with NNCF's fake quantizers, initialised from qat_calib_images training images; writes *_int8.onnx
    qat_from: str | None = None
    qat_calib_images: int = 256
    # weights in half of the int8 range ("enable": every conv; "first_layer_only"; "disable": full range): x86 CPUs
    # without VNNI (AVX2) sum u8 x s8 pairs in saturating int16, which full-range weights overflow in ONNX Runtime
    qat_overflow_fix: str = "enable"
    # how many quantizers stay off (in float), chosen on the calibration images before training (train/qat_float.py)
    qat_float_layers: int = 0
    data: str | None = None  # ImageFolder DIR, a .npz in the bundled format, or None for Fashion-MNIST
    recipe: str = "default"  # the recipe's own name, recorded with the run
    # schedule (lr is for lr_base_batch images per step; it scales linearly with batch_size)
    epochs: int = 10
    batch_size: int = 128  # global: over all processes and accumulation steps
    lr_base_batch: int = 0  # 0: lr is used as given
    lr: float = 0.1
    opt: str = "sgd"
    momentum: float = 0.9
    opt_eps: float | None = None
    weight_decay: float = 1e-5
    sched: str = "cosine"
    min_lr: float = 0.0
    warmup_epochs: float = 0.0
    warmup_lr: float = 1e-5
    decay_epochs: float = 90.0
    decay_rate: float = 0.1
    decay_milestones: list | None = None  # epochs where sched=multistep multiplies lr by decay_rate
    # regularisation
    smoothing: float = 0.1
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    model_ema: bool = False
    model_ema_decay: float = 0.9998
    model_ema_warmup: bool = False  # decay ramps up from 0 (timm's use_warmup): for short runs
    clip_grad: float | None = None
    precise_bn_images: int = 0  # before each evaluation, recompute BN statistics over this many training images
    # knowledge distillation (GhostNetV3, Liu et al., arXiv 2404.11202; see train/distill.py): the loss is
    # ori_loss_weight * CE + kd_loss_weight * soft cross-entropy to the frozen teacher's softened outputs
    teacher: str | None = None  # a registered name, torchvision:NAME or timm:NAME; None: no distillation
    teacher_checkpoint: str | None = None  # the teacher's weights (a file; read safely, never unpickled)
    teacher_input_size: int | None = None  # resize the teacher's input (shorter side) to this, as --teacher-resize
    kd_loss_weight: float = 1.0
    kd_temperature: float = 1.0
    ori_loss_weight: float = 1.0  # weight of the label loss (cross-entropy / soft-target CE under mixup)
    # augmentation (ImageFolder data; the bundled dataset uses random placement and flips)
    img_size: int = 224
    # the bundled Fashion-MNIST (data: None or a .npz): its 32x32 canvas scaled to bundled_size pixels (a multiple of
    # 16: 224 trains an ImageNet-shaped model) as bundled_channels identical channels (1 or 3)
    bundled_size: int = 32
    bundled_channels: int = 1
    hflip: float = 0.5
    color_jitter: float = 0.4
    auto_augment: str | None = None
    re_prob: float = 0.0
    re_mode: str = "pixel"
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    # engine
    amp: bool = False
    amp_dtype: str = "bfloat16"
    channels_last: bool = True
    compile: bool = False
    sync_bn: bool = False
    accum_steps: int = 1
    seed: int = 42
    workers: int = 4
    threads: int = 0  # torch threads per process; 0 = torch's default
    checkpoint_every: int = 0  # also checkpoint every N optimizer steps (0: only at epoch ends)
    eval_every: int = 1  # evaluate every N epochs (and always after the last)
    device: str = "auto"

    def scaled_lr(self) -> float:
        """The learning rate for ``batch_size``: linear scaling from the recipe's batch (Goyal et al., 2017)."""
        return self.lr * self.batch_size / self.lr_base_batch if self.lr_base_batch else self.lr

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in fields(TrainConfig)}


def _check_type(name: str, value: object) -> object:
    kind = _FIELDS[name].type.replace(" ", "")
    options = kind.split("|")
    if value is None:
        if "None" in options:
            return None
        raise ConfigError(f"{name} cannot be empty (null); give a {options[0]}")
    if isinstance(value, bool) and "bool" not in options:
        raise ConfigError(f"{name} takes a {kind}, got {value!r}")
    if "bool" in options and isinstance(value, bool):
        return value
    if "int" in options and isinstance(value, int):
        return value
    if "float" in options and isinstance(value, (int, float)):
        return float(value)
    if "str" in options and isinstance(value, (str, int, float)):
        return str(value)
    if "dict" in options and isinstance(value, dict):
        return value
    if "list" in options and isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return list(value)
    raise ConfigError(f"{name} takes a {kind}, got {value!r} ({type(value).__name__})")


def _unknown(name: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(name, _FIELDS, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else f" Known fields: {', '.join(_FIELDS)}."
    return ConfigError(f"unknown training field {name!r} in {where}.{hint}")


def update_config(config: TrainConfig, values: dict, where: str) -> TrainConfig:
    """``config`` with ``values`` applied, each checked against the field's type."""
    for name, value in values.items():
        if name not in _FIELDS:
            raise _unknown(name, where)
        setattr(config, name, _check_type(name, value))
    return config


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def recipe_path(name_or_file: str | Path) -> Path:
    """The file of a bundled recipe name (``quick``, ``ghostnetv2``, ...) or a path to a YAML file of your own."""
    path = Path(name_or_file)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"recipe file {path} does not exist; bundled recipes: {', '.join(list_recipes())}")
        return path
    bundled = RECIPE_DIR / f"{name_or_file}.yaml"
    if not bundled.is_file():
        close = difflib.get_close_matches(str(name_or_file), list_recipes(), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"unknown recipe {name_or_file!r}; {hint}bundled recipes: {', '.join(list_recipes())} "
                          "(or pass a path to a .yaml file)")
    return bundled


def load_recipe(name_or_file: str | Path) -> TrainConfig:
    """A :class:`TrainConfig` from a recipe (bundled name or YAML file); fields it leaves out keep their defaults."""
    path = recipe_path(name_or_file)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {path} is not valid YAML: {e}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"recipe {path} must be a mapping of field: value, got {type(values).__name__}")
    values.setdefault("recipe", path.stem)
    return update_config(TrainConfig(), values, f"recipe {path}")


def parse_overrides(pairs: list[str]) -> dict:
    """``["lr=0.2", "model_ema=true"]`` -> ``{"lr": 0.2, "model_ema": True}`` (values read as YAML scalars)."""
    values = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r} must look like field=value, e.g. lr=0.2 or epochs=5")
        key = key.strip().lstrip("-").replace("-", "_")
        try:
            values[key] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            values[key] = text
    return values

"""Knowledge distillation as GhostNetV3 trains (Liu et al., arXiv 2404.11202; official ``ghostnetv3_pytorch/train.py``).

The student learns from the labels and from a frozen teacher's class distribution::

    loss = ori_loss_weight * CE(z_s, y) + kd_loss_weight * KD(z_s, z_t)
    KD(z_s, z_t) = mean_i( -sum_c softmax(z_t / T)_ic * log_softmax(z_s / T)_ic )

``CE`` is the run's own loss (label smoothing, or soft-target CE on Mixup/CutMix targets; the teacher sees the same
mixed images, as in the official script). The official ``kd_loss`` is this soft cross-entropy at T = 1 (``bmm`` of
the teacher's probabilities and the student's log-probabilities, averaged over the batch): it has **no T^2 factor**
and never reads its ``--temperature`` argument (default 1.0). ghostnets applies ``kd_temperature`` to both logits as
Hinton et al. (2015) do, and keeps the official scale (no T^2), so T = 1 is exactly the official loss.

The teacher is built from the config on every start (never saved with the student), frozen (no gradients, always in
eval mode), put on the run's device, never wrapped in DDP, and run under ``torch.no_grad`` inside the student's
autocast. ``teacher_input_size`` resizes the teacher's input (shorter side, bilinear, antialiased), as the official
``--teacher-resize``.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import is_torchvision
from .config import ConfigError, TrainConfig

TIMM_PREFIX = "timm:"
KD_FIELDS = {"teacher_checkpoint": None, "teacher_input_size": None, "kd_loss_weight": 1.0, "kd_temperature": 1.0,
             "ori_loss_weight": 1.0}
"""The distillation fields and their defaults: without a teacher, none may differ from these."""


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """GhostNetV3's KD term: mean over images of ``-sum_c softmax(z_t/T) * log_softmax(z_s/T)`` (no T^2 factor)."""
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    p_teacher = F.softmax(teacher_logits.float() / temperature, dim=1)
    return -(p_teacher * log_p_student).sum(dim=1).mean()


class FrozenTeacher(nn.Module):
    """A teacher that stays in eval mode (``.train()`` does not change it), takes no gradients and runs under
    ``torch.no_grad``; optionally resizes its input to ``input_size``."""

    def __init__(self, model: nn.Module, input_size: int | None = None, channels_last: bool = False) -> None:
        super().__init__()
        self.model, self.input_size, self.channels_last = model, input_size, channels_last
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> FrozenTeacher:
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and min(images.shape[-2:]) != self.input_size:
            from torchvision.transforms.v2.functional import resize

            images = resize(images, [self.input_size], antialias=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.model(images)


@dataclass
class Distiller:
    """The teacher and the weights of GhostNetV3's two loss terms."""

    teacher: FrozenTeacher
    kd_loss_weight: float = 1.0
    temperature: float = 1.0
    ori_loss_weight: float = 1.0

    def __call__(self, loss: torch.Tensor, logits: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor,
                                                                                               torch.Tensor]:
        """``(ori_loss_weight * loss + kd term, kd term)`` for the student's ``logits`` on ``images``; the kd term
        is ``kd_loss_weight * KD`` (what the official script logs as ``Loss_kd``). Call it inside the autocast."""
        kd = self.kd_loss_weight * kd_loss(logits, self.teacher(images), self.temperature)
        return self.ori_loss_weight * loss + kd, kd.detach()


def check_distillation(config: TrainConfig) -> None:
    """Refuse distillation settings that cannot work, before anything is built or written."""
    if config.teacher is None:
        stray = [k for k, default in KD_FIELDS.items() if getattr(config, k) != default]
        if stray:
            verb = "takes" if len(stray) == 1 else "take"
            raise ConfigError(f"{', '.join(f'{k}={getattr(config, k)!r}' for k in stray)} {verb} effect only with a "
                              "teacher: set teacher=NAME (a ghostnets name, torchvision:NAME or timm:NAME), or drop "
                              "the distillation settings")
        return
    if config.teacher_checkpoint is None:
        raise ConfigError(f"teacher={config.teacher!r} has no weights: set teacher_checkpoint=FILE (a randomly "
                          "initialised teacher teaches nothing, and ghostnets downloads no weights), or teacher=null "
                          "to train without distillation")
    for name in ("kd_loss_weight", "ori_loss_weight"):
        value = getattr(config, name)
        if not value >= 0 or value == float("inf"):
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    if config.kd_loss_weight == 0 and config.ori_loss_weight == 0:
        raise ConfigError("kd_loss_weight and ori_loss_weight are both 0: nothing to learn from; set either > 0 "
                          "(GhostNetV3 uses 1.0 and 1.0)")
    if not config.kd_temperature > 0 or config.kd_temperature == float("inf"):
        raise ConfigError(f"kd_temperature must be a finite number > 0, got {config.kd_temperature!r} "
                          "(GhostNetV3's script uses 1.0)")
    if config.teacher_input_size is not None and config.teacher_input_size < 1:
        raise ConfigError(f"teacher_input_size must be a positive number of pixels or null, got "
                          f"{config.teacher_input_size!r}")


def _timm_teacher(name: str, checkpoint: str, num_classes: int, in_chans: int) -> nn.Module:
    """``timm.create_model(name)`` with the checkpoint's weights, read with ghostnets' safe reader, loaded strictly."""
    import timm

    from ..checkpoint import read_state_dict

    try:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans)
    except RuntimeError as e:
        if "Unknown model" not in str(e):
            raise
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(TIMM_PREFIX + c for c in close)}?" if close else ""
        raise ConfigError(f"teacher: timm has no model {name!r}.{hint} (see timm.list_models())") from None
    state, _ = read_state_dict(checkpoint)
    own = model.state_dict()
    head = model.get_classifier()
    head_keys = {k for k, v in model.named_parameters() if any(v is p for p in head.parameters())}
    wrong = {k: (tuple(state[k].shape), tuple(v.shape)) for k, v in own.items() if k in state and
             state[k].shape != v.shape}
    if wrong and set(wrong) <= head_keys:
        found = next(shape[0][0] for key, shape in wrong.items() if key.endswith("weight"))
        raise ConfigError(f"teacher checkpoint {checkpoint} classifies {found} classes; the student's data has "
                          f"{num_classes}. Distil from a teacher trained (or fine-tuned) on the same classes")
    missing, unexpected = [k for k in own if k not in state], [k for k in state if k not in own]
    if wrong or missing or unexpected:
        shown = [f"{k} {a} vs {b}" for k, (a, b) in list(wrong.items())[:4]]
        raise ConfigError(f"teacher checkpoint {checkpoint} does not fit timm's {name} ({in_chans} input channels): "
                          f"{len(missing)} missing keys {missing[:4]}, {len(unexpected)} unexpected {unexpected[:4]}, "
                          f"{len(wrong)} wrongly shaped (file vs model) {shown}; check the teacher name")
    model.load_state_dict(state)
    return model


def _ghostnets_teacher(name: str, checkpoint: str, num_classes: int, in_chans: int, channels_last: bool) -> nn.Module:
    """A registered or ``torchvision:`` model from the checkpoint (via ``create_model``), with the student's class
    count; a checkpoint with another class count is refused (create_model would re-initialise the classifier)."""
    from ..factory import create_model
    from ..record import in_chans_of

    kwargs = {} if is_torchvision(name) else {"in_chans": in_chans, "channels_last": channels_last}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = create_model(name, checkpoint_path=checkpoint, num_classes=num_classes, **kwargs)
    for w in caught:
        if "classifier does not fit" in str(w.message):
            raise ConfigError(f"teacher checkpoint {checkpoint} was trained on another number of classes than the "
                              f"student's data has ({num_classes}): {w.message}. Distil from a teacher trained on "
                              "the same classes")
        warnings.warn(w.message, w.category, stacklevel=3)
    if in_chans_of(model) != in_chans:
        raise ConfigError(f"teacher {name} takes {in_chans_of(model)}-channel images, the data has {in_chans}; "
                          "pick a teacher trained on this data")
    return model


def build_teacher(config: TrainConfig, num_classes: int, in_chans: int, image_size: int,
                  device: torch.device) -> FrozenTeacher:
    """The frozen teacher ``config.teacher`` names, on ``device``; checked to give ``num_classes`` logits."""
    name, checkpoint = config.teacher, config.teacher_checkpoint
    if name.startswith(TIMM_PREFIX):
        model = _timm_teacher(name[len(TIMM_PREFIX):], checkpoint, num_classes, in_chans)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
    else:
        model = _ghostnets_teacher(name, checkpoint, num_classes, in_chans, config.channels_last)
    teacher = FrozenTeacher(model, config.teacher_input_size, channels_last=config.channels_last).to(device)
    size = image_size if config.teacher_input_size is None else config.teacher_input_size
    try:
        out = teacher(torch.zeros(1, in_chans, size, size, device=device))
    except Exception as e:
        raise ConfigError(f"teacher {name} cannot take the run's {in_chans}x{size}x{size} images "
                          f"({type(e).__name__}: {str(e).splitlines()[0]}); set teacher_input_size to the size it "
                          "was trained at") from None
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise ConfigError(f"teacher {name} gives outputs of shape {tuple(out.shape)}; the student's data has "
                          f"{num_classes} classes. Distil from a teacher trained on the same classes")
    return teacher


def build_distiller(config: TrainConfig, num_classes: int, in_chans: int, image_size: int,
                    device: torch.device) -> Distiller | None:
    """The run's :class:`Distiller`, or None when ``config.teacher`` is not set."""
    check_distillation(config)
    if config.teacher is None:
        return None
    teacher = build_teacher(config, num_classes, in_chans, image_size, device)
    return Distiller(teacher, config.kd_loss_weight, config.kd_temperature, config.ori_loss_weight)

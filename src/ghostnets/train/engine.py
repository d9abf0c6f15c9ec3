"""One optimizer step and one evaluation pass: the parts of the loop every training run shares."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import Distributed


def autocast(device: torch.device, enabled: bool, dtype: str) -> contextlib.AbstractContextManager:
    """Mixed precision: bfloat16 on CPU, float16 or bfloat16 on CUDA (``amp_dtype``)."""
    if not enabled:
        return contextlib.nullcontext()
    if dtype not in ("bfloat16", "float16"):
        raise ValueError(f"amp_dtype must be bfloat16 or float16, got {dtype!r}")
    if device.type == "cpu" and dtype == "float16":
        raise ValueError("float16 autocast is for CUDA; use amp_dtype=bfloat16 on the CPU")
    return torch.autocast(device_type=device.type, dtype=getattr(torch, dtype))


@dataclass
class StepResult:
    loss: float  # mean loss of the step's images (this process)
    correct: float  # top-1 hits against the hard labels
    count: int  # images
    kd_loss: float = 0.0  # the distillation term of ``loss`` (weighted), when a teacher takes part


def train_step(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, loss_fn, optimizer,
               context: Distributed, mixup=None,
               accum_steps: int = 1, clip_grad: float | None = None, scaler=None, amp=contextlib.nullcontext,
               no_sync=contextlib.nullcontext, distiller=None) -> StepResult:
    """Forward, backward and one optimizer step over ``accum_steps`` micro-batches.

    Micro-batch ``j`` is ``images[j::accum_steps]``: the same images process ``j`` of a ``accum_steps``-process
    run gets, so one process with accumulation and several processes compute the same step. A non-finite loss
    or non-finite gradients on any process skip the optimizer step everywhere (the weights stay as they were) and
    return ``loss=nan``. ``distiller`` (:class:`~ghostnets.train.distill.Distiller`) adds the teacher's term
    (GhostNetV3's knowledge distillation); its teacher sees the same (mixed) images under the same autocast.
    """
    if mixup is not None and len(images) % 2:  # mixup pairs images; a batch left odd by skipped files loses one
        images, targets = images[:-1], targets[:-1]
    hard = targets
    if mixup is not None:
        images, targets = mixup(images, targets)
    optimizer.zero_grad(set_to_none=True)
    total_loss, total_kd, correct = 0.0, 0.0, 0.0
    for j in range(accum_steps):
        micro_x, micro_y, micro_hard = images[j::accum_steps], targets[j::accum_steps], hard[j::accum_steps]
        sync = contextlib.nullcontext() if j == accum_steps - 1 else no_sync()
        with sync:
            with amp():
                logits = model(micro_x)
                loss = loss_fn(logits.float(), micro_y)
                if distiller is not None:
                    loss, kd = distiller(loss, logits, micro_x)
                    total_kd += kd.item() * len(micro_x)
            scaled = loss / accum_steps
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        total_loss += loss.item() * len(micro_x)
        correct += (logits.argmax(1) == micro_hard).sum().item()
    if scaler is not None:
        scaler.unscale_(optimizer)
    # the gradient norm (clipped if asked) tells non-finite gradients; with a float16 scaler those are expected now
    # and then, and the scaler skips such steps itself
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad or math.inf).item()
    diverged = not math.isfinite(total_loss) or (scaler is None and not math.isfinite(norm))
    # every process backpropagated (none waits forever in an all-reduce); all agree before stepping
    if context.any(diverged):
        optimizer.zero_grad(set_to_none=True)
        return StepResult(math.nan, 0.0, len(hard))
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return StepResult(total_loss / len(hard), correct, len(hard), total_kd / len(hard))


@torch.inference_mode()
@torch.no_grad()
def precise_bn(model: nn.Module, batches, images: int, context: Distributed, *, amp=contextlib.nullcontext) -> int:
    """Recompute every BatchNorm's running statistics as the plain average over ``images`` training images (pycls's
    precise BN, used by RegNet's design-space studies, Radosavovic et al. arXiv 2003.13678): a short run's running
    averages lag its weights (torchvision's MobileNetV3 BN keeps 99 % of the old statistics per step). Returns the
    images seen."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative moving average: every batch weighs the same
    was_training = model.training
    model.train()
    seen = 0
    try:
        for batch, _, _ in batches:
            if batch is None:
                continue
            with amp():
                model(batch.to(context.device, non_blocking=True))
            seen += len(batch)
            if seen >= images:
                break
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    return seen


@torch.inference_mode()
def evaluate(model: nn.Module, batches, context: Distributed, *, amp=contextlib.nullcontext,
             reference: nn.Module | None = None) -> dict:
    """Top-1, top-5 (%) and mean cross-entropy over every held-out image (summed over processes), without autograd
    (which kept every layer's activations of a batch alive: 24 GiB for GhostNetV2 at 224 px, 256 images);
    ``reference``: also ``agreement``, the share (%) of images whose top-1 is ``reference``'s."""
    model.eval()
    loss_sum = top1 = top5 = count = skipped = agreed = 0.0
    for images, targets, n_skipped in batches:
        skipped += n_skipped
        if images is None:
            continue
        images = images.to(context.device, non_blocking=True)
        targets = targets.to(context.device, non_blocking=True)
        with amp():
            logits = model(images).float()
        loss_sum += F.cross_entropy(logits, targets, reduction="sum").item()
        best = logits.topk(min(5, logits.shape[1]), dim=1).indices
        top1 += (best[:, 0] == targets).sum().item()
        top5 += (best == targets[:, None]).any(1).sum().item()
        count += len(targets)
        if reference is not None:
            with amp():
                agreed += (reference(images).argmax(1) == best[:, 0]).sum().item()
    loss_sum, top1, top5, count, skipped, agreed = context.all_sum([loss_sum, top1, top5, count, skipped, agreed])
    if count == 0:
        raise ValueError("evaluation saw no images: the held-out split is empty or every file in it is corrupt")
    result = {"top1": 100 * top1 / count, "top5": 100 * top5 / count, "loss": loss_sum / count, "images": int(count),
              "skipped": int(skipped)}
    if reference is not None:
        result["agreement"] = 100 * agreed / count
    return result

"""``train``: a run from a :class:`TrainConfig` to checkpoints, metrics and a summary; resumable, DDP-aware.

One process or ``torchrun --nproc_per_node=N``: the same code, rank 0 logs and writes. A run directory holds
``config.yaml``, ``checkpoint.pth`` (the resumable state, every epoch and every ``checkpoint_every`` steps),
``last.safetensors`` / ``best.safetensors`` (weights for :func:`ghostnets.create_model`, EMA weights when EMA is on),
``metrics.jsonl`` / ``metrics.csv``, ``tensorboard/``, ``curves.png`` and ``summary.json``.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import signal
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from ..atomic import atomic_write
from ..checkpoint import save_checkpoint
from ..errors import GhostnetsError
from ..factory import create_model
from ..record import is_deploy
from .config import ConfigError, TrainConfig
from .distill import build_distiller, check_distillation
from .distributed import Distributed, init_distributed, shutdown
from .engine import autocast, evaluate, precise_bn, train_step
from .loaders import RunData, build_data
from .metrics import MetricsLog
from .qat_float import disabled_quantizers
from .state import capture_rng, load_state, restore_rng, save_state

RUN_FILES = ("config.yaml", "checkpoint.pth", "last.safetensors", "best.safetensors", "last_int8.onnx",
             "best_int8.onnx", "metrics.jsonl", "metrics.csv", "curves.png", "summary.json")


SCHEDULES = ("cosine", "step", "multistep", "tanh", "poly")
RESUME_MAY_CHANGE = frozenset({"data", "workers", "threads", "checkpoint_every", "eval_every", "device", "compile"})
"""Fields a resumed run may set anew; the rest (model, schedule, augmentation, seed) must match the saved run."""


class TrainingDiverged(GhostnetsError, RuntimeError):
    """The loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


class RunDirectoryInUse(GhostnetsError, FileExistsError):
    """``--out`` holds an earlier run and neither ``--resume`` nor ``--force`` was given."""


@dataclass
class Progress:
    """Where the run is: the next (epoch, step), optimizer updates so far, and this epoch's running sums."""

    epoch: int = 0
    step: int = 0
    updates: int = 0
    loss_sum: float = 0.0
    kd_sum: float = 0.0  # the distillation term's share of loss_sum
    correct: float = 0.0
    count: int = 0
    skipped: int = 0
    train_seconds: float = 0.0
    best_top1: float = -1.0
    best_epoch: int = -1
    history: list = field(default_factory=list)

    def start_epoch(self) -> None:
        self.loss_sum = self.kd_sum = self.correct = 0.0
        self.count = self.skipped = 0


def check_run_directory(out: Path, *, resume: bool, force: bool) -> None:
    """Refuse to write over an earlier run unless asked to resume it or to start over."""
    found = [name for name in RUN_FILES if (out / name).exists()]
    if resume:
        if not (out / "checkpoint.pth").exists():
            raise GhostnetsError(f"--resume: {out} holds no checkpoint.pth to resume from; start a new run without "
                                 "--resume")
        return
    if found and not force:
        raise RunDirectoryInUse(f"{out} holds an earlier run ({', '.join(found)}); pass --resume to continue it, "
                                "--force to start over (its files are replaced), or choose another --out")
    if force:
        for name in found:
            (out / name).unlink()
        shutil.rmtree(out / "tensorboard", ignore_errors=True)


class _StopRequest:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint at the next step boundary and exits."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.first_at = 0.0

    @contextmanager
    def installed(self):
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):
            # a second Ctrl-C stops at once; within 3 s it is the same one (torchrun forwards the terminal's)
            if self.signal is not None and time.monotonic() - self.first_at > 3.0:
                raise KeyboardInterrupt
            if self.signal is None:
                self.signal, self.first_at = signum, time.monotonic()

        for s in previous:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


class Trainer:
    """Everything one training run holds; :meth:`fit` runs it to the end (or to a clean stop)."""

    def __init__(self, config: TrainConfig, out: str | Path, *, resume: bool = False, force: bool = False,
                 progress_bar: bool = True) -> None:
        self.config, self.out, self.progress_bar = config, Path(out), progress_bar
        self.context: Distributed = init_distributed(config.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        if self.context.is_main:
            check_run_directory(self.out, resume=resume, force=force)
        self.context.barrier()
        state = load_state(self.out / "checkpoint.pth") if resume else None
        if state is not None:
            self._check_resumable(state)
        seed = config.seed + self.context.rank
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        autocast(self.context.device, config.amp, config.amp_dtype)  # a bad amp setting fails before any file
        check_distillation(config)
        if config.sched not in SCHEDULES:
            raise ConfigError(f"sched must be one of {', '.join(SCHEDULES)} (per-step schedules), got {config.sched!r}")
        per_process = config.batch_size // max(self.context.world_size, 1) // max(config.accum_steps, 1)
        if (config.mixup > 0 or config.cutmix > 0) and per_process % 2:
            raise ConfigError(f"mixup/cutmix pair images within a batch: the per-process micro-batch must be even, "
                              f"got batch_size {config.batch_size} / {self.context.world_size} processes / "
                              f"{config.accum_steps} accum_steps = {per_process}")
        self.data: RunData = build_data(config, self.context)
        self.model = self._build_model()
        # the teacher: rebuilt from the config on every start (never saved), outside DDP, frozen, on this device
        self.distiller = build_distiller(config, len(self.data.class_names), self.data.input_spec.channels,
                                         self.data.input_spec.size, self.context.device)
        self._build_optimization()
        self.progress = Progress()
        if state is not None:
            self._restore(state)
        self.amp = partial(autocast, self.context.device, config.amp, config.amp_dtype)
        if self.context.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write(self.out / "config.yaml", lambda tmp: tmp.write_text(yaml.safe_dump(config.as_dict())))

    # ----------------------------------------------------------------------------------------------- set-up
    def _check_resumable(self, state: dict) -> None:
        saved = state["config"]
        for key, value in saved.items():
            if key not in RESUME_MAY_CHANGE and value != getattr(self.config, key, value):
                raise GhostnetsError(
                    f"cannot resume {self.out}: it was trained with {key}={value!r}, this run asks for "
                    f"{getattr(self.config, key)!r}. A resumed run continues its saved schedule; only "
                    f"{', '.join(sorted(RESUME_MAY_CHANGE))} may change. Resume with the same value, or start a "
                    "new run (--force or another --out)")

    def _build_model(self) -> nn.Module:
        config, data = self.config, self.data
        # QAT: the float deploy form (what int8 should agree with), where the post-training ranges stood, the last
        # int8 file written ((epoch, updates), path), the images the files are checked on, the runtimes' figures
        self.float_reference = self.qat_start = self._int8_written = self._qat_images = self.int8 = None
        if config.qat_from:
            from .qat import quantized_for_training

            model, self.float_reference = quantized_for_training(config, data, self.context.device)
        else:
            kwargs = {"drop_rate": config.drop_rate, "drop_path_rate": config.drop_path_rate,
                      "channels_last": config.channels_last, **config.model_kwargs}
            model = create_model(config.model, num_classes=len(data.class_names), in_chans=data.input_spec.channels,
                                 checkpoint_path=config.initial_checkpoint, **kwargs)
            if is_deploy(model):
                raise GhostnetsError("a deploy-form model has nothing to train (its BatchNorms are folded); train "
                                     "the training form and reparameterize afterwards")
        model.to(self.context.device)
        self.module = model  # the plain model: what is saved, what EMA copies
        if self.context.enabled:
            if config.sync_bn:
                if self.context.device.type != "cuda":
                    raise GhostnetsError("sync_bn needs CUDA (torch's SyncBatchNorm has no CPU kernel); drop sync_bn "
                                         "on the CPU")
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
                self.module = model
            ids = [self.context.device.index] if self.context.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if config.compile:
            model = torch.compile(model)
        return model

    def _build_optimization(self) -> None:
        from timm.data import Mixup
        from timm.loss import SoftTargetCrossEntropy
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2
        from timm.utils import ModelEmaV3

        config = self.config
        extra = {"eps": config.opt_eps} if config.opt_eps is not None else {}
        self.optimizer = create_optimizer_v2(self.module, opt=config.opt, lr=config.scaled_lr(),
                                             weight_decay=config.weight_decay, momentum=config.momentum, **extra)
        self.steps_per_epoch = self.data.train.steps_per_epoch()
        milestones = config.decay_milestones
        extra_sched = {"decay_milestones": [int(m) for m in milestones]} if milestones else {}
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer, sched=config.sched, num_epochs=config.epochs, decay_epochs=config.decay_epochs,
            decay_rate=config.decay_rate, min_lr=config.min_lr, warmup_lr=config.warmup_lr,
            warmup_epochs=config.warmup_epochs, step_on_epochs=False, updates_per_epoch=self.steps_per_epoch,
            **extra_sched)
        self.ema = ModelEmaV3(self.module, decay=config.model_ema_decay, use_warmup=config.model_ema_warmup) \
            if config.model_ema else None
        self.mixup = None
        if config.mixup > 0 or config.cutmix > 0:
            self.mixup = Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, label_smoothing=config.smoothing,
                               num_classes=len(self.data.class_names))
            self.loss_fn = SoftTargetCrossEntropy()
        else:
            self.loss_fn = nn.CrossEntropyLoss(label_smoothing=config.smoothing)
        use_scaler = config.amp and config.amp_dtype == "float16" and self.context.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    # ------------------------------------------------------------------------------------------- the state
    def _state(self, running: list[float], rng: list[dict]) -> dict:
        p = self.progress
        return {
            "arch": self.config.model, "config": self.config.as_dict(), "class_names": self.data.class_names,
            "input": self.data.input_spec.as_dict(), "state_dict": self.module.state_dict(),
            "state_dict_ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": p.epoch, "step": p.step, "updates": p.updates,
            "running": running, "train_seconds": p.train_seconds,
            "best": [p.best_top1, p.best_epoch], "metric": p.best_top1, "rng": rng, "qat_start": self.qat_start,
        }

    def _restore(self, state: dict) -> None:
        if list(state["class_names"]) != list(self.data.class_names) or \
                state["input"]["channels"] != self.data.input_spec.channels:
            raise GhostnetsError(f"cannot resume {self.out}: it was trained on {len(state['class_names'])} classes "
                                 f"({', '.join(state['class_names'][:5])}, ...) and this data has "
                                 f"{len(self.data.class_names)} ({', '.join(self.data.class_names[:5])}, ...); resume "
                                 "on the same classes or start a new run")
        self.module.load_state_dict(state["state_dict"])
        if self.ema is not None and state["state_dict_ema"] is not None:
            self.ema.module.load_state_dict(state["state_dict_ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        p = self.progress
        p.epoch, p.step, p.updates = state["epoch"], state["step"], state["updates"]
        if self.context.is_main:  # the sums of all processes, kept once
            p.loss_sum, p.correct, p.count, p.skipped, p.kd_sum = [*state["running"], 0.0][:5]
        p.train_seconds = state["train_seconds"]
        p.best_top1, p.best_epoch = state["best"]
        self.qat_start = state.get("qat_start")
        if len(state["rng"]) == self.context.world_size:
            restore_rng(state["rng"][self.context.rank])
        else:
            warnings.warn(f"{self.out} was written by {len(state['rng'])} process(es), this run has "
                          f"{self.context.world_size}: random streams start afresh (the result will not be bit-exact)",
                          stacklevel=2)
        self._log(f"resuming {self.out} at epoch {p.epoch + 1}, step {p.step} of {self.steps_per_epoch} "
                  f"({p.updates} updates done)")

    def _save(self) -> None:
        """Every process calls this (the running sums and RNG states are gathered); rank 0 writes."""
        p = self.progress
        running = self.context.all_sum([p.loss_sum, p.correct, p.count, p.skipped, p.kd_sum])
        rng = self.context.gather(capture_rng())
        if self.context.is_main:
            save_state(self.out / "checkpoint.pth", self._state(running, rng))

    def _export(self, name: str, top1: float, use_ema: bool) -> Path:
        """Weights for inference, rebuilt by ``create_model(checkpoint_path=...)``: the EMA weights when EMA is on
        and they evaluate at least as well as the raw weights (a young EMA lags behind), else the raw weights."""
        source = self.ema.module if use_ema else self.module
        meta = {"epoch": str(self.progress.epoch), "top1": f"{top1:.4f}", "recipe": self.config.recipe,
                "weights": "ema" if use_ema else "model"}
        if self.float_reference is not None:  # QAT: the int8 file instead of the weights
            from .qat import export_int8_onnx

            target = self.out / name.replace(".safetensors", "_int8.onnx")
            written = self._int8_written
            if written is not None and written[0] == (self.progress.epoch, self.progress.updates):
                # best = last, from the same weights: the checked file, copied
                return atomic_write(target, lambda tmp: shutil.copyfile(written[1], tmp))
            export_int8_onnx(source, target, spec=self.data.input_spec, class_names=self.data.class_names,
                             images=self.qat_images(), metadata={f"ghostnets.{k}": v for k, v in meta.items()})
            self._int8_written = ((self.progress.epoch, self.progress.updates), target)
            return target
        return save_checkpoint(source, self.out / name, class_names=self.data.class_names,
                               input=self.data.input_spec, metadata=meta)

    def qat_images(self) -> torch.Tensor:
        """Up to 32 held-out images the int8 files are checked on."""
        if self._qat_images is None:
            from .qat import first_images

            self._qat_images = torch.cat(first_images(self.data.eval, 32))
        return self._qat_images

    # ---------------------------------------------------------------------------------------------- the loop
    def _log(self, message: str) -> None:
        if self.context.is_main:
            tqdm.write(f"ghostnets: {message}", file=sys.stderr)

    def fit(self) -> dict:
        """Train to ``config.epochs``; returns the summary (also written to ``summary.json``)."""
        config, p = self.config, self.progress
        taught = f", distilled from {config.teacher}" if self.distiller is not None else ""
        self._log(f"{config.model}{taught} on {self.data.description}; {config.epochs} epochs x {self.steps_per_epoch} "
                  f"steps of {config.batch_size} images on {self.context.world_size} process(es) "
                  f"({self.context.device}), lr {config.scaled_lr():g}; writing to {self.out}")
        if self.float_reference is not None and self.qat_start is None:  # where post-training quantization stands
            start = evaluate(self.module, self.data.eval, self.context, amp=self.amp, reference=self.float_reference)
            self.qat_start = {"top1": start["top1"], "agreement": start["agreement"]}
            self._log(f"before quantization-aware training (NNCF's post-training ranges): eval top-1 "
                      f"{start['top1']:.2f}%, top-1 agreement with float32 {start['agreement']:.2f}%")
        log = MetricsLog(self.out, resume_epoch=p.epoch) if self.context.is_main else None
        if log is not None:
            p.history = list(log.rows)  # a resumed run's summary covers the epochs before it too
        try:
            with _StopRequest().installed() as stop:
                while p.epoch < config.epochs:
                    row = self._train_epoch(stop)
                    if row is None:
                        self._save()
                        self._log(f"stopped by signal {stop.signal}: saved {self.out / 'checkpoint.pth'} at epoch "
                                  f"{p.epoch + 1} step {p.step}; continue with --resume")
                        raise KeyboardInterrupt
                    self._end_epoch(row, log)
        finally:
            if log is not None:
                log.plot()
                log.close()
        if self.float_reference is not None and self.context.is_main:
            from .qat import int8_figures

            self.int8 = int8_figures(self.out / "last_int8.onnx", self.float_reference, self.data.eval,
                                     threads=config.threads or None)
        summary = self._summary()
        shutdown(self.context)
        return summary

    def _train_epoch(self, stop: _StopRequest) -> dict | None:
        config, p, context = self.config, self.progress, self.context
        if p.step == 0:
            p.start_epoch()
        batches = self.data.train
        batches.set_epoch(p.epoch, p.step)
        self.model.train()
        bar = tqdm(total=self.steps_per_epoch, initial=p.step, desc=f"epoch {p.epoch + 1}/{config.epochs}",
                   disable=not (self.progress_bar and context.is_main), leave=False, dynamic_ncols=True)
        no_sync = getattr(self.model, "no_sync", None)
        first_step, started = p.step, time.perf_counter()
        for images, targets, skipped in batches:
            p.skipped += skipped
            if not context.any(images is None or len(images) < 2):  # all ranks step, or none (all-corrupt batch)
                images = images.to(context.device, non_blocking=True)
                targets = targets.to(context.device, non_blocking=True)
                result = train_step(self.model, images, targets, loss_fn=self.loss_fn, optimizer=self.optimizer,
                                    context=context, mixup=self.mixup, accum_steps=config.accum_steps,
                                    clip_grad=config.clip_grad, scaler=self.scaler, amp=self.amp,
                                    no_sync=no_sync or contextlib.nullcontext, distiller=self.distiller)
                if math.isnan(result.loss):
                    self._diverged()
                p.updates += 1
                self.scheduler.step_update(num_updates=p.updates)
                if self.ema is not None:
                    self.ema.update(self.module, step=p.updates)
                p.loss_sum += result.loss * result.count
                p.kd_sum += result.kd_loss * result.count
                p.correct += result.correct
                p.count += result.count
            p.step += 1
            elapsed = time.perf_counter() - started
            if context.is_main and (p.step % 10 == 0 or p.step == self.steps_per_epoch):
                done = (p.step - first_step) * config.batch_size
                bar.set_postfix(loss=f"{p.loss_sum / max(p.count, 1):.3f}",
                                acc=f"{100 * p.correct / max(p.count, 1):.1f}",
                                lr=f"{self.optimizer.param_groups[0]['lr']:.3g}",
                                img_s=f"{done / max(elapsed, 1e-9):.0f}", refresh=False)
            bar.update()
            if config.checkpoint_every and p.updates % config.checkpoint_every == 0 and p.step < self.steps_per_epoch:
                p.train_seconds += time.perf_counter() - started
                started = time.perf_counter()
                self._save()
            if context.any(stop.signal is not None):
                p.train_seconds += time.perf_counter() - started
                bar.close()
                return None
        bar.close()
        p.train_seconds += time.perf_counter() - started
        loss_sum, correct, count, skipped, kd_sum = context.all_sum([p.loss_sum, p.correct, p.count, p.skipped,
                                                                    p.kd_sum])
        kd = {"train_kd_loss": kd_sum / max(count, 1)} if self.distiller is not None else {}
        return {"epoch": p.epoch, "train_loss": loss_sum / max(count, 1), **kd,
                "train_top1": 100 * correct / max(count, 1), "lr": self.optimizer.param_groups[0]["lr"],
                "train_skipped": int(skipped), "train_seconds": p.train_seconds}

    def _diverged(self) -> None:
        p = self.progress
        where = self.out / "checkpoint.pth"
        kept = f"the last good checkpoint is {where}" if where.exists() else "no checkpoint was written yet"
        raise TrainingDiverged(
            f"the loss became NaN/inf at epoch {p.epoch + 1}, step {p.step + 1}; training stopped and {kept}. "
            "Lower lr, set clip_grad (e.g. clip_grad=5), or turn amp off, then --resume or start again")

    def _end_epoch(self, row: dict, log: MetricsLog | None) -> None:
        config, p = self.config, self.progress
        last = p.epoch + 1 == config.epochs
        self.scheduler.step(p.epoch + 1)
        if last or (p.epoch + 1) % max(config.eval_every, 1) == 0:
            if config.precise_bn_images > 0:
                self.data.train.set_epoch(p.epoch, 0)
                precise_bn(self.module, self.data.train, config.precise_bn_images, self.context, amp=self.amp)
            result = evaluate(self.module, self.data.eval, self.context, amp=self.amp, reference=self.float_reference)
            row.update({f"eval_{k}": v for k, v in result.items() if k in ("top1", "top5", "loss", "agreement")})
            if self.ema is not None:
                ema = evaluate(self.ema.module, self.data.eval, self.context, amp=self.amp)
                row.update({f"eval_ema_{k}": v for k, v in ema.items() if k in ("top1", "top5", "loss")})
            use_ema = self.ema is not None and row["eval_ema_top1"] >= row["eval_top1"]
            score = row["eval_ema_top1"] if use_ema else row["eval_top1"]
            improved = score > p.best_top1
            if improved:
                p.best_top1, p.best_epoch = score, p.epoch
        else:
            score, improved, use_ema = None, False, self.ema is not None
        images = (p.epoch + 1) * self.steps_per_epoch * config.batch_size
        row["images_per_second"] = images / max(p.train_seconds, 1e-9)
        p.history.append(row)
        p.epoch, p.step = p.epoch + 1, 0
        p.start_epoch()
        if self.context.is_main:  # weights first, then the state that records them: a kill in between redoes both
            log.add(row)
            self._export("last.safetensors", score if score is not None else float("nan"), use_ema)
            if improved:
                self._export("best.safetensors", score, use_ema)
        self._save()
        if self.context.is_main:
            shown = f", eval top-1 {row['eval_top1']:.2f}%" if score is not None else ""
            if "eval_ema_top1" in row:
                shown += f" (EMA {row['eval_ema_top1']:.2f}%)"
            if "eval_agreement" in row:
                shown += f", top-1 agreement with float32 {row['eval_agreement']:.2f}%"
            self._log(f"epoch {p.epoch}/{config.epochs}: train loss {row['train_loss']:.4f}, train top-1 "
                      f"{row['train_top1']:.2f}%{shown}, {row['images_per_second']:.0f} img/s"
                      + (f", {row['train_skipped']} corrupt images skipped" if row["train_skipped"] else ""))

    def _summary(self) -> dict:
        p, config = self.progress, self.config
        last = p.history[-1] if p.history else {}
        summary = {
            "model": config.model, "recipe": config.recipe, "epochs": config.epochs,
            "processes": self.context.world_size, "best_top1": p.best_top1, "best_epoch": p.best_epoch + 1,
            "final_top1": max(last.get("eval_ema_top1", -1.0), last.get("eval_top1", -1.0)),
            "train_seconds": p.train_seconds, "images_per_second": last.get("images_per_second"),
            "skipped_images": sum(row.get("train_skipped", 0) for row in p.history), "out": str(self.out),
        }
        if self.int8 is not None:
            summary["final_agreement"] = last.get("eval_agreement")
            summary["before_qat"] = self.qat_start
            summary["int8"] = self.int8
            summary["kept_in_float"] = disabled_quantizers(self.module, self.qat_images())
        if self.context.is_main:
            atomic_write(self.out / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2)))
        return summary


def train(config: TrainConfig, out: str | Path, *, resume: bool = False, force: bool = False,
          progress_bar: bool = True) -> dict:
    """Run ``config`` into ``out`` (see the module docstring for what it writes); returns the summary."""
    return Trainer(config, out, resume=resume, force=force, progress_bar=progress_bar).fit()

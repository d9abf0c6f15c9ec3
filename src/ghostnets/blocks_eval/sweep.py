"""``ghostnets blocks sweep``: sample networks of every block from the design space and proxy-train each one with
the project's trainer, one Optuna trial per network (Bonnaerens et al., arXiv 2208.12694; RegNet's protocol,
Radosavovic et al., arXiv 2003.13678: many networks per design space, each trained briefly).

Workers (processes, machines) run the same command on the same storage and study; the study hands each planned
network out once. A trial's run lives in ``workdir/<block>/<index>``: a retried trial (its worker died) resumes from
the run's last checkpoint. A trial that fails (NaN loss, out of memory, a block refusing its sample) is recorded as
failed with its reason, and the sweep goes on.

``sampler="random"`` plans ``samples`` networks per block (the paper's estimate of each block's distribution);
``sampler="nsga2"`` searches each block's best networks for top-1 against the latency of ``objective`` on this
machine (NSGA-II, Deb et al. 2002, Optuna's ``NSGAIISampler``): one study per block, ``<study>.<block>``.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..errors import GhostnetsError
from ..layers.block_registry import block_info
from .space import Architecture, check_band, sample
from .study import SweepSettings, _optuna, create_or_load, load

STATES_TAKEN = ("WAITING", "RUNNING", "COMPLETE")
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # recorded with each trial it trains


@dataclass
class WorkerOptions:
    """How this worker trains: where its runs go, its threads and device; the storage's heartbeat."""

    workdir: Path
    threads: int = 0
    device: str = "auto"
    progress_bar: bool = True
    max_trials: int | None = None  # stop after this many trials (tests; a bounded share of a shared sweep)
    poll_s: float = 5.0  # how often an idle worker looks for a retried trial while others still run


def check_blocks(names: list[str]) -> list[str]:
    """The block names, each registered (an unknown one is refused with close names)."""
    if not names:
        raise GhostnetsError("give at least one block (--blocks ghost,mbv2,...; `ghostnets blocks list` shows them)")
    for name in names:
        block_info(name)
    return list(dict.fromkeys(names))


def _states(*names: str):
    optuna = _optuna()
    return tuple(getattr(optuna.trial.TrialState, n) for n in names)


def plan(study, settings: SweepSettings, *, bar: bool = True) -> int:
    """Enqueue every planned network ``block/index`` not yet in the study; returns how many were added."""
    present = {t.user_attrs.get("key") for t in study.get_trials(deepcopy=False)}
    # index-major: a sweep stopped half-way has networks of every block, not every network of half the blocks
    missing = [(b, i) for i in range(settings.samples) for b in settings.blocks if f"{b}/{i}" not in present]
    for block, index in tqdm(missing, desc="sampling networks", unit="net", disable=not bar or not missing,
                             file=sys.stderr):
        s = sample(settings.space, block, index, settings.seed, settings.band)
        study.enqueue_trial({}, user_attrs={"key": f"{block}/{index}", "block": block, "sample": index,
                                            "arch": s.arch.model_kwargs(), "madds": s.madds, "params": s.params,
                                            "draws": s.tries})
    return len(missing)


def _train(settings: SweepSettings, arch: Architecture, run_dir: Path, options: WorkerOptions) -> dict:
    """Proxy-train ``arch``: resume its run if a checkpoint is there, reuse a finished one."""
    import json

    from ..train import load_recipe, train
    from ..train.config import update_config

    summary = run_dir / "summary.json"
    if summary.is_file():  # trained, but its worker died before the study heard of it
        return json.loads(summary.read_text())
    config = load_recipe(settings.recipe)
    update_config(config, {"model": "blocknet", "model_kwargs": arch.model_kwargs(), "epochs": settings.epochs,
                           "data": data_path(settings, options.workdir), "img_size": settings.space.input_size,
                           "seed": settings.seed, "threads": options.threads, "device": options.device,
                           "workers": 0}, "the sweep")
    resume = (run_dir / "checkpoint.pth").is_file()
    return train(config, run_dir, resume=resume, force=not resume, progress_bar=options.progress_bar)


def fit_space_to_data(space, data: str | None):
    """The space with the data's channels and classes (what the networks' MAdds are counted with)."""
    import dataclasses

    if data is None or str(data).endswith(".npz"):
        return dataclasses.replace(space, in_chans=1, num_classes=10)  # the bundled format: 10 grayscale classes
    from ..data.image_folder import find_classes

    return dataclasses.replace(space, in_chans=3, num_classes=len(find_classes(Path(data) / "train")))


def data_path(settings: SweepSettings, workdir: Path) -> str | None:
    """The data the trials train on: ``settings.data``, or (a class-balanced subset of) the bundled set."""
    if settings.train_per_class is None and settings.eval_per_class is None:
        return settings.data
    if settings.data is not None and not str(settings.data).endswith(".npz"):
        raise GhostnetsError("--train-per-class / --eval-per-class take a subset of the bundled data (or a .npz in "
                             "its format); an ImageFolder --data is used whole: make a smaller folder instead")
    from ..data.fashion_mnist import class_subset

    return str(class_subset(workdir, settings.train_per_class, settings.eval_per_class, source=settings.data))


def _fail(trial, reason: str) -> None:
    trial.set_user_attr("fail_reason", reason[:2000])


def _random_objective(study, settings: SweepSettings, options: WorkerOptions):
    optuna = _optuna()

    def objective(trial) -> float:
        key = trial.user_attrs.get("key")
        if key is None:
            trial.set_user_attr("skip_reason", "nothing left to train: every planned network was taken")
            raise optuna.TrialPruned()
        for other in study.get_trials(deepcopy=False, states=_states(*STATES_TAKEN)):
            if other.number < trial.number and other.user_attrs.get("key") == key:
                trial.set_user_attr("skip_reason", f"{key} is trial {other.number}'s already")
                raise optuna.TrialPruned()
        block, index = key.split("/")
        run_dir = options.workdir / block / index
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("worker", WORKER)
        try:
            result = _train(settings, Architecture.from_kwargs(trial.user_attrs["arch"]), run_dir, options)
        except Exception as e:
            _fail(trial, f"{type(e).__name__}: {e}")
            raise
        top1 = float(result["final_top1"])
        if not math.isfinite(top1):
            _fail(trial, f"the held-out top-1 is {top1}")
            raise GhostnetsError(f"{key}: held-out top-1 {top1}")
        trial.set_user_attr("top1", top1)
        trial.set_user_attr("train_seconds", result.get("train_seconds"))
        return top1

    return objective


def _work(study, objective, options: WorkerOptions, total: int, desc: str, done_fn) -> int:
    """Run trials until none is waiting and none of another worker is still running (a dead worker's trial is
    retried once its heartbeat is stale). Returns the number of trials this worker ran."""
    optuna = _optuna()
    ran = 0
    with tqdm(total=total, initial=done_fn(), desc=desc, unit="trial", disable=not options.progress_bar,
              file=sys.stderr) as bar:
        while options.max_trials is None or ran < options.max_trials:
            optuna.storages.fail_stale_trials(study)
            waiting = study.get_trials(deepcopy=False, states=_states("WAITING"))
            if not waiting:
                if not study.get_trials(deepcopy=False, states=_states("RUNNING")):
                    break
                time.sleep(options.poll_s)  # another worker's trial: it finishes, or it goes stale and comes back
                continue
            study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
            ran += 1
            bar.n = done_fn()
            bar.refresh()
    return ran


def completed_keys(study) -> set[str]:
    return {t.user_attrs.get("key") for t in study.get_trials(deepcopy=False, states=_states("COMPLETE"))}


def start_sweep(storage, study_name: str, settings: SweepSettings, options: WorkerOptions):
    """Check everything a sweep needs before any training, cut its data once, create (or join) its study; returns
    ``(study, settings in force)``. The random sweep (:func:`run_sweep`) and NSGA-II (``nsga2.run_nsga2``) start
    here."""
    check_blocks(list(settings.blocks))
    if settings.sampler not in ("random", "nsga2"):
        raise GhostnetsError(f"--sampler must be random or nsga2, got {settings.sampler!r}")
    check_band(settings.space, list(settings.blocks), settings.band)  # before any study or training
    options.workdir.mkdir(parents=True, exist_ok=True)
    data_path(settings, options.workdir)  # fetch / cut the data once, before the trials
    study, settings, _ = create_or_load(storage, study_name, settings)
    return study, settings


def run_sweep(storage, study_name: str, settings: SweepSettings, options: WorkerOptions) -> dict:
    """Create (or join) a random sweep's study, plan its networks, and train them until none is left. Returns
    counts."""
    study, settings = start_sweep(storage, study_name, settings, options)
    if settings.sampler != "random":
        raise GhostnetsError(f"study {study_name!r} samples with {settings.sampler}: run it with --sampler "
                             f"{settings.sampler}")
    plan(study, settings, bar=options.progress_bar)
    planned = {f"{b}/{i}" for b in settings.blocks for i in range(settings.samples)}
    ran = _work(study, _random_objective(study, settings, options), options, len(planned), "training",
                lambda: len(completed_keys(study) & planned))
    done = completed_keys(study) & planned
    failed = {t.user_attrs.get("key") for t in study.get_trials(deepcopy=False, states=_states("FAIL"))
              if "fail_reason" in t.user_attrs} - done
    return {"planned": len(planned), "completed": len(done), "failed": len(failed), "ran_here": ran}


def _trial_studies(storage, study_name: str, study, settings: SweepSettings) -> list:
    """The studies holding the sweep's trials: the study itself (random), or one per block (nsga2)."""
    if settings.sampler == "random":
        return [study]
    return [s for s in (load_block_study(storage, study_name, b) for b in settings.blocks) if s is not None]


def trial_records(storage, study_name: str) -> tuple[list[dict], SweepSettings, object]:
    """One record per completed network: key, block, arch, madds, params, top1 (and the trial number)."""
    study, settings = load(storage, study_name)
    records, seen = [], set()
    for s in _trial_studies(storage, study_name, study, settings):
        for t in s.get_trials(deepcopy=False, states=_states("COMPLETE")):
            key = t.user_attrs.get("key")
            if key is None or key in seen:
                continue
            seen.add(key)
            records.append({"key": key, "block": t.user_attrs["block"], "trial": t.number,
                            "top1": t.user_attrs.get("top1", t.values[0] if t.values else None),
                            "madds": t.user_attrs.get("madds"), "params": t.user_attrs.get("params"),
                            "arch": t.user_attrs.get("arch")})
    return records, settings, study


def failures(storage, study_name: str) -> list[dict]:
    """The failed trials with their reasons (a dead worker's: retried, or left after MAX_RETRIES)."""
    study, settings = load(storage, study_name)
    rows = []
    for s in _trial_studies(storage, study_name, study, settings):
        retried = {t.user_attrs.get("retry_of") for t in s.get_trials(deepcopy=False)}
        for t in s.get_trials(deepcopy=False, states=_states("FAIL")):
            reason = t.user_attrs.get("fail_reason") or "its worker stopped (no heartbeat)"
            rows.append({"trial": t.number, "key": t.user_attrs.get("key"),
                         "reason": reason + ("; retried" if t.number in retried else "")})
    return rows


def load_block_study(storage, study_name: str, block: str):
    optuna = _optuna()
    try:
        return optuna.load_study(study_name=f"{study_name}.{block}", storage=storage)
    except KeyError:
        return None

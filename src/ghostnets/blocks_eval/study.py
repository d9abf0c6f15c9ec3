"""The block evaluation's record: an Optuna study (SQLite by default, any RDB URL such as PostgreSQL for workers
on many machines) holding the sweep's settings, one trial per sampled network, and the latencies measured later.

- The settings (design space, MAdds band, blocks, samples, seed, sampler, proxy training) are the study's user
  attribute ``ghostnets_blocks``; a run asking for another space, band, seed or training is refused before any
  training. More blocks or samples extend the study.
- With the random sampler every planned network ``block/index`` is an enqueued trial (user attributes ``block``,
  ``sample``, ``key``); workers pop them, so each is handed out once. A worker that dies stops sending heartbeats;
  after the grace period its trial is failed and a copy is enqueued (``retry_of``), which resumes from the trial's
  last checkpoint. A planned network is never lost or trained twice.
- A latency is the study attribute ``latency:<target>:<runtime>:<batch>:<key>`` (finished trials cannot change).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import GhostnetsError
from .space import DesignSpace

SETTINGS_ATTR = "ghostnets_blocks"
SAMPLERS = ("random", "nsga2")
MAX_RETRIES = 3  # a network whose worker died this often is left failed


class StudyError(GhostnetsError, ValueError):
    """A storage that cannot be opened, a study that does not exist, or one made with other settings."""


def _optuna():
    try:
        import optuna
    except ImportError:
        raise StudyError("the block evaluation records its sweep in an Optuna study: pip install 'ghostnets[blocks]' "
                         "(optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@dataclass(frozen=True)
class SweepSettings:
    """What a study samples and how it trains; all of it but ``blocks`` and ``samples`` is fixed at creation."""

    space: DesignSpace
    blocks: tuple[str, ...]
    samples: int
    band: tuple[float, float]
    seed: int = 0
    sampler: str = "random"
    epochs: int = 3
    recipe: str = "blockeval"
    data: str | None = None  # None: the bundled Fashion-MNIST
    train_per_class: int | None = None  # a class-balanced subset of the bundled training split
    eval_per_class: int | None = None  # likewise of its test split
    objective: str = "eager:1"  # nsga2's latency objective: runtime:batch, measured in the trial on this machine
    training: dict = dataclasses.field(default_factory=dict)  # the recipe's values (filled from ``recipe``)

    def __post_init__(self) -> None:
        if not self.training:  # what the recipe holds now: a recipe edited later cannot pass for the same one
            from ..train import load_recipe

            values = {k: v for k, v in load_recipe(self.recipe).as_dict().items() if k not in ("data", "epochs")}
            object.__setattr__(self, "training", json.loads(json.dumps(values)))

    def as_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["space"] = self.space.as_dict()
        values["fingerprint"] = self.space.fingerprint()
        return json.loads(json.dumps(values))  # tuples as lists: what the storage gives back

    @classmethod
    def from_dict(cls, values: dict) -> SweepSettings:
        values = {k: v for k, v in values.items() if k != "fingerprint"}
        return cls(**{**values, "space": DesignSpace.from_dict(values["space"]), "blocks": tuple(values["blocks"]),
                      "band": tuple(values["band"])})

    FIXED = ("band", "seed", "sampler", "epochs", "recipe", "data", "train_per_class", "eval_per_class", "objective",
             "training")

    def check_same_as(self, saved: SweepSettings, study: str) -> None:
        """Refuse to add trials made another way to ``study`` (recorded as ``saved``)."""
        if saved.space != self.space:
            changed = [k for k, v in self.space.as_dict().items() if saved.space.as_dict()[k] != v]
            raise StudyError(f"study {study!r} was created with another design space (fingerprint "
                             f"{saved.space.fingerprint()}, this run {self.space.fingerprint()}; differs in "
                             f"{', '.join(changed)}): its networks would not be comparable. Use the study's space "
                             "(`ghostnets blocks report` shows it) or start a new study (--study NAME)")
        changed = [f"{k}: study {getattr(saved, k)!r}, this run {getattr(self, k)!r}" for k in self.FIXED
                   if getattr(saved, k) != getattr(self, k) and k != "training"]
        changed += [f"recipe field {k}: study {saved.training.get(k)!r}, this run {self.training.get(k)!r}"
                    for k in sorted(set(saved.training) | set(self.training))
                    if saved.training.get(k) != self.training.get(k)]
        if changed:
            raise StudyError(f"study {study!r} was created with other settings ({'; '.join(changed)}); resume it "
                             "with the same ones, or start a new study (--study NAME)")

    def merged(self, saved: SweepSettings) -> SweepSettings:
        blocks = tuple(dict.fromkeys(saved.blocks + self.blocks))
        return dataclasses.replace(saved, blocks=blocks, samples=max(saved.samples, self.samples))


def open_storage(url: str, *, heartbeat_s: int = 30, grace_s: int | None = None):
    """An Optuna RDB storage for ``url`` with heartbeats (a dead worker's trial is retried after ``grace_s``)."""
    optuna = _optuna()
    if not isinstance(url, str) or "://" not in url:
        raise StudyError(f"storage {url!r} is not a database URL: use sqlite:///runs/blocks.db (a file, made if "
                         "missing) or postgresql://USER@HOST/DB for workers on many machines")
    engine_kwargs = {}
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) not in ("", ":memory:"):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StudyError(f"storage {url}: cannot make its folder {path.parent}: {e}") from None
        engine_kwargs = {"connect_args": {"timeout": 60}}  # workers on one file wait for each other's writes
    from optuna.storages import RDBStorage

    def retry(study, trial) -> None:
        retries = trial.user_attrs.get("retries", 0)
        if "key" not in trial.user_attrs or retries >= MAX_RETRIES:
            return
        study.add_trial(optuna.create_trial(
            state=optuna.trial.TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            user_attrs={**trial.user_attrs, "retry_of": trial.number, "retries": retries + 1},
            system_attrs={k: v for k, v in trial.system_attrs.items() if k == "fixed_params"}))

    try:
        storage = RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
                             grace_period=grace_s or 3 * heartbeat_s,
                             heartbeat_stale_trial_callback=retry)
    except Exception as e:  # sqlalchemy's errors name the driver or the connection problem
        raise StudyError(f"cannot open the storage {url}: {type(e).__name__}: {str(e).splitlines()[0]}. Check the "
                         "URL (sqlite:///path/to/file.db, postgresql://USER@HOST:PORT/DB) and that the server is "
                         "running and its driver installed (psycopg2 for PostgreSQL)") from None
    if url.startswith("sqlite:"):
        _serialize_sqlite_transactions(storage.engine)
    return storage


def _serialize_sqlite_transactions(engine) -> None:
    """Make every SQLite transaction take the file's write lock when it begins (``BEGIN IMMEDIATE``).

    Optuna claims a waiting trial by reading its state and then writing RUNNING, relying on ``SELECT ... FOR
    UPDATE``, which SQLite ignores; Python's driver also begins a transaction only at the first write. Two workers
    could both read WAITING and both train the same network (15 of 300 claims doubled with 3 processes). With the
    lock taken at BEGIN, the read and the write are one step, as on PostgreSQL. SQLAlchemy's recipe for pysqlite:
    https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _driver_leaves_transactions_alone(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_with_the_write_lock(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners (the schema check) are not reused


def study_names(storage) -> list[str]:
    return [s.study_name for s in _optuna().get_all_study_summaries(storage, include_best_trial=False)]


def create_or_load(storage, name: str, settings: SweepSettings):
    """The study ``name`` with ``settings`` recorded; an existing one must have been made with the same settings
    (more blocks or samples extend it). Returns ``(study, settings in force, created)``."""
    optuna = _optuna()
    directions = ["maximize"] if settings.sampler == "random" else ["maximize", "minimize"]
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=directions)
        study.set_user_attr(SETTINGS_ATTR, settings.as_dict())
        return study, settings, True
    except optuna.exceptions.DuplicatedStudyError:
        pass
    study, saved = load(storage, name)
    settings.check_same_as(saved, name)
    merged = settings.merged(saved)
    if merged != saved:
        study.set_user_attr(SETTINGS_ATTR, merged.as_dict())
    return study, merged, False


def load(storage, name: str):
    """``(study, settings)`` of an existing block-evaluation study; a missing one lists those there are."""
    optuna = _optuna()
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = study_names(storage)
        raise StudyError(f"no study {name!r} in this storage; it holds {', '.join(names) or 'none'}. "
                         "`ghostnets blocks sweep --study NAME ...` creates one") from None
    values = study.user_attrs.get(SETTINGS_ATTR)
    for _ in range(50):  # another worker may be creating it this very moment
        if values is not None:
            break
        import time

        time.sleep(0.2)
        values = optuna.load_study(study_name=name, storage=storage).user_attrs.get(SETTINGS_ATTR)
    if values is None:
        raise StudyError(f"study {name!r} was not made by `ghostnets blocks sweep` (no {SETTINGS_ATTR} record)")
    return study, SweepSettings.from_dict(values)


def latency_attr(target: str, runtime: str, batch: int, key: str) -> str:
    return f"latency:{target}:{runtime}:{batch}:{key}"


def measured(study) -> dict[tuple[str, str, int, str], dict]:
    """Every latency recorded in ``study``: ``{(target, runtime, batch, key): figures}``."""
    out = {}
    for attr, value in study.user_attrs.items():
        if attr.startswith("latency:"):
            _, target, runtime, batch, key = attr.split(":", 4)
            out[(target, runtime, int(batch), key)] = value
    return out

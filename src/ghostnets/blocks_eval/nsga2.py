"""``--sampler nsga2``: per block, a multi-objective search for its best networks (top-1 against the latency of one
runtime on this machine) with Optuna's NSGA-II sampler (Deb et al., IEEE TEC 2002) over the same design space;
beyond the paper's random estimate, for a user who wants each block's front rather than its distribution. One study
per block, ``<study>.<block>``; the parent study holds the settings and the latencies ``measure`` adds."""

from __future__ import annotations

import math

from ..errors import GhostnetsError
from .space import Architecture, DesignSpaceError, _snap_widths, block_choices, measure_arch
from .study import SweepSettings, _optuna
from .sweep import WorkerOptions, _fail, _states, _train, _work, start_sweep

ATTEMPTS_PER_SAMPLE = 25  # trials (most outside the band) a block may take per network it must train


def suggest_arch(trial, settings: SweepSettings, block: str) -> Architecture | None:
    """The design space as Optuna distributions (log-uniform depth, width and expansion per stage)."""
    space, n = settings.space, settings.space.stages
    choices = block_choices(space, block)
    m = space.width_multiple
    depths = [trial.suggest_int(f"depth{i}", space.depth[0], space.depth[1], log=True) for i in range(n)]
    widths = sorted(m * trial.suggest_int(f"width{i}", max(1, math.ceil(space.width[0] / m)), space.width[1] // m,
                                          log=True) for i in range(n))
    expansions = [round(trial.suggest_float(f"expansion{i}", *space.expansion, log=True) / space.expansion_step)
                  * space.expansion_step if choices["expansion"] else None for i in range(n)]
    kernels = [trial.suggest_categorical(f"kernel{i}", choices["kernel_sizes"]) for i in range(n)]
    ses = [trial.suggest_categorical(f"se{i}", choices["se_ratios"]) for i in range(n)]
    stem_stride, strides = space.stride_schedule()
    snapped = _snap_widths(space, block, widths, depths, strides, space.stem_chs, list(zip(kernels, expansions, ses)))
    if not snapped:
        return None
    return Architecture(block, tuple(depths), snapped, strides, space.stem_chs, stem_stride, tuple(kernels),
                        tuple(expansions), tuple(ses))


def _objective(settings: SweepSettings, block: str, options: WorkerOptions):
    optuna = _optuna()
    from .measure import eager_objective_latency

    def objective(trial):
        key = trial.user_attrs.get("key") or f"{block}/n{trial.number}"
        arch = suggest_arch(trial, settings, block)
        try:
            if arch is None:
                raise DesignSpaceError("no width the block builds")
            madds, params = measure_in_band(settings, arch)
        except DesignSpaceError as e:
            trial.set_user_attr("skip_reason", str(e))
            raise optuna.TrialPruned() from None
        trial.set_user_attr("key", key)
        for name, value in (("block", block), ("arch", arch.model_kwargs()), ("madds", madds), ("params", params)):
            trial.set_user_attr(name, value)
        try:
            result = _train(settings, arch, options.workdir / key, options)
            latency = eager_objective_latency(arch, settings)
        except Exception as e:
            _fail(trial, f"{type(e).__name__}: {e}")
            raise
        trial.set_user_attr("top1", float(result["final_top1"]))
        trial.set_user_attr("objective_latency_ms", latency)
        return float(result["final_top1"]), latency

    return objective


def run_nsga2(storage, study_name: str, settings: SweepSettings, options: WorkerOptions) -> dict:
    """Create (or join) the sweep and search each block's study until it holds ``samples`` trained networks."""
    optuna = _optuna()
    _, settings = start_sweep(storage, study_name, settings, options)
    if settings.sampler != "nsga2":
        raise GhostnetsError(f"study {study_name!r} samples with {settings.sampler}: run it with --sampler "
                             f"{settings.sampler}")
    completed = failed = ran = 0
    for block in settings.blocks:
        study = optuna.create_study(storage=storage, study_name=f"{study_name}.{block}", load_if_exists=True,
                                    directions=["maximize", "minimize"],
                                    sampler=optuna.samplers.NSGAIISampler(seed=settings.seed,
                                                                          population_size=max(4, settings.samples)))
        objective = _objective(settings, block, options)

        def done(study=study) -> int:
            return len(study.get_trials(deepcopy=False, states=_states("COMPLETE")))

        attempts = 0
        while done() < settings.samples and attempts < ATTEMPTS_PER_SAMPLE * settings.samples:
            running = len(study.get_trials(deepcopy=False, states=_states("RUNNING")))
            if done() + running >= settings.samples:  # the rest is another worker's: wait for it (or its retry)
                ran += _work(study, objective, options, settings.samples, f"nsga2 {block}", done)
                continue
            study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
            attempts, ran = attempts + 1, ran + 1
        completed += done()
        failed += len([t for t in study.get_trials(deepcopy=False, states=_states("FAIL"))
                       if "fail_reason" in t.user_attrs])
    return {"planned": settings.samples * len(settings.blocks), "completed": completed, "failed": failed,
            "ran_here": ran}


def measure_in_band(settings: SweepSettings, arch: Architecture) -> tuple[int, int]:
    """(MAdds, params) of ``arch``, refused when outside the study's band."""
    madds, params = measure_arch(arch, settings.space)
    if not settings.band[0] <= madds <= settings.band[1]:
        raise DesignSpaceError(f"{madds / 1e6:.2f}M MAdds, outside the band")
    return madds, params

"""``ghostnets blocks measure``: the latency of every network of a study on the machine where it runs, per
runtime and batch size, through the project's one timing harness; recorded in the study under a target name.

Latency needs no trained weights: each network is built from its recorded architecture with random weights, in its
deploy form (every BatchNorm folded, re-parameterized branches merged), exported for the runtimes that need it, and
the runtimes of one network take turns in interleaved blocks of timed calls (:mod:`ghostnets.runtime.timing`), so
drift of a shared machine hits them alike. Already measured (target, runtime, batch, network) are skipped: a killed
measurement resumes. The same study collects latencies from a laptop, a server, a GPU box or an edge device.
"""

from __future__ import annotations

import datetime
import gc
import platform
import re
import sys
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

from ..data.transforms import FASHION_MNIST_INPUT, InputSpec
from ..errors import GhostnetsError
from ..runtime import RuntimeContext, deploy_form, summarize, time_interleaved
from ..runtime.runtimes import check_runtimes
from .space import Architecture
from .study import SweepSettings, latency_attr, measured
from .sweep import trial_records

TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
CALIBRATION_IMAGES = 64


def check_target(name: str) -> str:
    if not TARGET_NAME.match(name or ""):
        raise GhostnetsError(f"--target {name!r}: name the device with letters, digits, '.', '_' or '-' (e.g. "
                             "this-cpu, rpi4, a100)")
    return name


def input_spec(settings: SweepSettings) -> InputSpec:
    """How the study's networks take images (int8 calibration): the bundled data's, at the space's input size."""
    space = settings.space
    if space.input_size == FASHION_MNIST_INPUT.size:
        return FASHION_MNIST_INPUT.with_channels(space.in_chans)
    return InputSpec(channels=space.in_chans, size=space.input_size, resize=space.input_size, interpolation="bilinear",
                     mean=FASHION_MNIST_INPUT.mean, std=FASHION_MNIST_INPUT.std).with_channels(space.in_chans)


def _machine() -> dict:
    from .. import __version__
    from ..measure.machine import cpu_name

    return {"machine": cpu_name(), "date": datetime.date.today().isoformat(), "torch": torch.__version__,
            "ghostnets": __version__, "python": platform.python_version()}


def time_network(arch: Architecture, settings: SweepSettings, runtimes: list[str], batch: int, *, threads: int,
                 runs: int, warmup: int, workdir: Path, calib: Path | None = None) -> dict[str, dict]:
    """``{runtime: {median_ms, p90_ms, images_per_s} or {error}}`` of ``arch`` (deploy form, random weights)."""
    model = deploy_form(arch.build(settings.space))
    size = (settings.space.input_size,) * 2
    ctx = RuntimeContext(workdir, threads=threads)
    if "int8" in runtimes:
        from ..data.samples import calibration_images, held_out_images

        spec = input_spec(settings)
        ctx.calib = calibration_images(spec, calib, CALIBRATION_IMAGES)
        ctx.held_out = held_out_images(spec, calib, CALIBRATION_IMAGES)
    results, fns = {}, {}
    x = torch.randn(batch, settings.space.in_chans, *size, generator=torch.Generator().manual_seed(batch)).numpy()
    for runtime in check_runtimes(runtimes):
        try:
            artifact = runtime.prepare(model, size, ctx)
            fn = runtime.load(artifact, x.shape, threads)
            fn(x)
            fns[runtime.name] = fn
        except Exception as e:  # one runtime failing on one network does not stop the others
            results[runtime.name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
    if fns:
        times = time_interleaved({k: (lambda fn=fn: fn(x)) for k, fn in fns.items()}, runs, warmup)
        for name, values in times.items():
            results[name] = {**summarize(values, batch),
                             "note": next(iter(ctx.notes.values()), None) if name == "int8" else None}
    del fns, model
    gc.collect()
    if any(r in ("compile", "cuda-compile") for r in runtimes):
        torch._dynamo.reset()
    return results


def measure_study(storage, study_name: str, *, target: str, runtimes: list[str], batches: list[int],
                  threads: int = 1, runs: int = 50, warmup: int = 10, calib: Path | None = None, force: bool = False,
                  progress_bar: bool = True) -> dict:
    """Time every completed network of the study not yet measured for ``target``; returns counts."""
    check_target(target)
    check_runtimes(runtimes)  # an unknown or unavailable runtime is refused before any work
    if not batches or any(b < 1 for b in batches):
        raise GhostnetsError(f"--batch takes sizes >= 1, got {batches}")
    records, settings, study = trial_records(storage, study_name)
    if not records:
        raise GhostnetsError(f"study {study_name!r} has no completed network yet: run `ghostnets blocks sweep` "
                             "first (latency is measured on the networks it trained)")
    torch.set_num_threads(threads)
    done = measured(study)
    todo = [(r, b) for r in records for b in batches
            if force or any((target, rt, b, r["key"]) not in done for rt in runtimes)]
    machine = _machine()
    timed = 0
    with tempfile.TemporaryDirectory(prefix="ghostnets-blocks-") as tmp, \
            tqdm(todo, desc=f"measuring on {target}", unit="net", disable=not progress_bar, file=sys.stderr) as bar:
        for record, batch in bar:
            bar.set_postfix_str(f"{record['key']} batch {batch}")
            wanted = [rt for rt in runtimes if force or (target, rt, batch, record["key"]) not in done]
            results = time_network(Architecture.from_kwargs(record["arch"]), settings, wanted, batch,
                                   threads=threads, runs=runs, warmup=warmup, calib=calib,
                                   workdir=Path(tmp) / record["key"].replace("/", "_"))
            for runtime, figures in results.items():
                study.set_user_attr(latency_attr(target, runtime, batch, record["key"]),
                                    {**figures, "threads": threads, "runs": runs, **machine})
            timed += 1
    return {"networks": len(records), "measured": timed, "skipped": len(records) * len(batches) - len(todo)}


def eager_objective_latency(arch: Architecture, settings: SweepSettings) -> float:
    """NSGA-II's latency objective: median ms of ``settings.objective`` (``runtime:batch``) on this machine."""
    runtime, _, batch = settings.objective.partition(":")
    with tempfile.TemporaryDirectory(prefix="ghostnets-blocks-") as tmp:
        result = time_network(arch, settings, [runtime], int(batch or 1), threads=torch.get_num_threads(), runs=30,
                              warmup=5, workdir=Path(tmp))[runtime]
    if "error" in result:
        raise GhostnetsError(f"latency objective {settings.objective}: {result['error']}")
    return result["median_ms"]

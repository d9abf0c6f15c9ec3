"""CPU training throughput (images/s) and peak memory of ghostnets models beside timm's port, in one run.

Protocol: one training step is forward + cross-entropy + backward + SGD step (momentum 0.9) on one fixed batch
(default 64 x 3 x 224 x 224, 1000 classes), model.train(), fixed thread count. Per model, three variants with the
same weights and their own optimizer: ghostnets (channels_last by default; it is fed the NCHW batch and converts it
itself, inside the timed step), timm as it comes (NCHW) and timm moved to channels_last by hand (model and input).
After a few warm-up steps each, the variants are timed round-robin, ``--steps`` steps per variant per round, the order
reversed every other round so that neither the machine's drift nor the allocator state left by the previous variant
favours one side. Target: ghostnets / timm >= 1.0 in images/s.
Peak memory: each of ghostnets and timm trains ``--mem-steps`` steps in a fresh subprocess (this script with
``--child NAME IMPL``); reported is the process's peak RSS minus its RSS once the imports, the model, the optimizer and
the batch exist, i.e. what training itself adds (activations, gradients, momentum, allocator slack). The peak is
``VmHWM`` of /proc/self/status, not ``ru_maxrss``: Linux carries ``ru_maxrss`` over fork + exec, so a child started by
this (by then large) process would report the parent's peak.
Writes the `train_throughput` section of BENCHMARKS.md.

    python benchmarks/train_throughput.py [--models ghostnet_100,...] [--rounds 5] [--steps 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

import timm
import torch
import torch.nn.functional as F

import ghostnets

from common import command_line, environment, median, time_interleaved, write_section

DEFAULT_MODELS = "ghostnet_100,ghostnetv2_100,repghostnet_100"
IMPLS = ("ghostnets", "timm", "timm_nhwc")


def build(name: str, impl: str, state_dict: dict | None = None) -> torch.nn.Module:
    if impl == "ghostnets":
        model = ghostnets.create_model(name)  # channels_last is its default
    else:
        model = timm.create_model(name)
        if state_dict is not None:
            model.load_state_dict(state_dict)  # same keys as ghostnets'
        if impl == "timm_nhwc":
            model = model.to(memory_format=torch.channels_last)
    return model.train()


def make_batch(batch: int, size: int, classes: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, size, size, generator=gen), torch.randint(0, classes, (batch,), generator=gen)


def stepper(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def run(n: int = steps) -> None:
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

    return run


def input_for(impl: str, x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if impl == "timm_nhwc" else x


def rss_mib(field: str = "VmRSS") -> float:
    """Current (``VmRSS``) or peak (``VmHWM``) resident memory of this process, in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(name: str, impl: str, args: argparse.Namespace) -> None:
    """Train ``name`` as ``impl`` for ``--mem-steps`` steps in this (fresh) process; print its RSS figures as JSON."""
    torch.manual_seed(0)
    x, y = make_batch(args.batch, args.size)
    x = input_for(impl, x)
    run = stepper(build(name, impl), x, y, args.mem_steps)
    base = rss_mib()
    run()
    # ru_maxrss (KiB on Linux) only as a cross-check: it includes the parent's peak at the fork
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"base": base, "peak": rss_mib("VmHWM"), "ru_maxrss": maxrss}))


def peak_rss(name: str, impl: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, impl, "--threads", str(args.threads),
           "--batch", str(args.batch), "--size", str(args.size), "--mem-steps", str(args.mem_steps)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(name: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """Seconds per round (``args.steps`` steps) of each variant, rounds interleaved."""
    torch.manual_seed(0)
    ours = build(name, "ghostnets")
    state = ours.state_dict()
    x, y = make_batch(args.batch, args.size)
    runs = {"ghostnets": stepper(ours, x, y, args.steps)}
    for impl in IMPLS[1:]:
        runs[impl] = stepper(build(name, impl, state), input_for(impl, x), y, args.steps)
    for run in runs.values():
        run(args.warmup)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for key, ms in time_interleaved({k: runs[k] for k in order}, runs=1, warmup=0).items():
            times[key].append(ms[0] / 1e3)
        print(f"  {name} round {r + 1}/{args.rounds}: "
              + ", ".join(f"{k} {args.batch * args.steps / v[-1]:.1f} img/s" for k, v in times.items()),
              file=sys.stderr, flush=True)
    return times


def profile(name: str, args: argparse.Namespace) -> None:
    """Print the ops that dominate one training step of each side (CPU self time)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.manual_seed(0)
    ours = build(name, "ghostnets")
    x, y = make_batch(args.batch, args.size)
    for impl in IMPLS:
        model = ours if impl == "ghostnets" else build(name, impl, ours.state_dict())
        run = stepper(model, input_for(impl, x), y, 1)
        run(args.warmup)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        print(f"== {name} {impl}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated model names")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per model")
    parser.add_argument("--steps", type=int, default=1, help="training steps per variant per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("--mem-steps", type=int, default=2, help="training steps of each peak-RSS subprocess")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table per variant instead")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(*args.child, args)
        return
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if args.profile:
        for name in names:
            profile(name, args)
        return

    rows, met = [], 0
    imgs = args.batch * args.steps
    # the fresh processes first, while this one is still small (less memory pressure, no swap-ins on their clock)
    mems = {name: {impl: peak_rss(name, impl, args) for impl in IMPLS[:2]} for name in names}
    for name in names:
        mem = mems[name]
        print(f"  {name} peak RSS: {mem}", file=sys.stderr, flush=True)
        t = measure(name, args)
        ips = {k: median(imgs / s for s in v) for k, v in t.items()}
        ratios = sorted(b / a for a, b in zip(t["ghostnets"], t["timm"]))  # per round: timm time / ours = speed-up
        ratio = statistics.median(ratios)
        met += ratio >= 1.0
        added = {k: m["peak"] - m["base"] for k, m in mem.items()}
        rows.append(
            f"| {name} | {ips['ghostnets']:.1f} | {ips['timm']:.1f} | **{ratio:.2f}** ({ratios[0]:.2f}-"
            f"{ratios[-1]:.2f}) | {ips['timm_nhwc']:.1f} | {added['ghostnets']:.0f} / {added['timm']:.0f} "
            f"({mem['ghostnets']['peak']:.0f} / {mem['timm']['peak']:.0f}) |"
        )
        print(rows[-1], flush=True, file=sys.stderr)

    body = "\n".join([
        "## CPU training throughput: ghostnets vs timm",
        "",
        f"Training step = forward + cross-entropy + backward + SGD (momentum 0.9) on one fixed batch of {args.batch} x "
        f"3 x {args.size} x {args.size}, 1000 classes, `model.train()`, eager PyTorch, {args.threads} threads. Same "
        "weights on every side. ghostnets runs channels_last (its default) and converts the NCHW batch itself, inside "
        "the timed step; timm runs as it comes (NCHW) and, for reference, moved to channels_last by hand (model and "
        f"input). {args.warmup} warm-up steps per variant, then {args.rounds} rounds of {args.steps} "
        f"step{'s' if args.steps != 1 else ''} per variant, round-robin (order reversed every other round). img/s: "
        "median over rounds; ratio: median of the per-round "
        "ratios ghostnets / timm in img/s (min-max over rounds in brackets). Peak RSS: each model trained "
        f"{args.mem_steps} steps in a fresh process; what training adds to the RSS the process has once imports, "
        "model, optimizer and batch exist (in brackets: the process's whole peak RSS, `VmHWM`).",
        f"Machine: {environment(args.threads)}.",
        f"Regenerate: `{command_line()}`.",
        "Target: ghostnets / timm >= 1.0 in img/s.",
        "",
        "| model | ghostnets img/s | timm img/s | ghostnets / timm | timm channels_last img/s "
        "| peak RSS added by training, ghostnets / timm (MiB) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"{met}/{len(names)} models meet the target.",
    ])
    if not args.no_write:
        write_section("train_throughput", body)
    print(body)


if __name__ == "__main__":
    main()

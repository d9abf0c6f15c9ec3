"""What the machine can do at best, and a roofline estimate of the least time a runtime can take on a model.

``peak_gflops``: the best rate of a float32 matrix product (the most regular compute there is);
``memory_bandwidth_gbs``: the best rate of a large tensor copy (bytes read + written). A model's bound is
``max(2 * MAdds / peak FLOP/s, bytes / bandwidth)``: depthwise convolutions do about one multiply-add per byte, so
efficient CNNs sit near the bandwidth side (docs/reference.md §9). The bytes are :data:`FLOOR`, the least a fused
executor moves when activations go through memory; at small batches they stay in the caches (faster than the copy
bandwidth), so the bound is an estimate a runtime may beat, not a proof. ``profile_layers``' total (an unfused pass)
is larger still: ghostnet_100 at 224, batch 1: 92 MB against a floor of 56 MB, and onnxruntime ran it in less time
than 92 MB take at the copy bandwidth.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


def _best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: first-touch page faults, thread pool start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def peak_gflops(threads: int, size: int = 2048, repeats: int = 3) -> float:
    """GFLOP/s of a ``size`` x ``size`` float32 matmul on ``threads`` threads, best of ``repeats`` (2 size^3 FLOPs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(size, size)
        b = torch.randn(size, size)
        out = torch.empty(size, size)
        seconds = _best_seconds(lambda: torch.mm(a, b, out=out), repeats)
    finally:
        torch.set_num_threads(previous)
    return 2 * size ** 3 / seconds / 1e9


def memory_bandwidth_gbs(megabytes: int = 256, repeats: int = 3, threads: int | None = None) -> float:
    """GB/s of copying a ``megabytes`` float32 tensor into another, best of ``repeats`` (bytes read + written)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        src = torch.ones(megabytes * 2 ** 20 // 4)
        dst = torch.empty_like(src)
        seconds = _best_seconds(lambda: dst.copy_(src), repeats)
    finally:
        torch.set_num_threads(previous)
    return 2 * src.numel() * 4 / seconds / 1e9


def _cpuinfo(field: str) -> str | None:
    """The first ``field`` line's value in /proc/cpuinfo (Linux), or None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == field:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (``avx512_vnni``, ``amx_int8``, ...); empty elsewhere."""
    return set((_cpuinfo("flags") or "").split())


@dataclass(frozen=True)
class MachineLimits:
    """Measured peak float32 compute and memory bandwidth at a thread count."""

    threads: int
    gflops: float
    bandwidth_gbs: float

    @classmethod
    def measure(cls, threads: int) -> MachineLimits:
        return cls(threads, peak_gflops(threads), memory_bandwidth_gbs(threads=threads))

    def bound_ms(self, madds: float, bytes_moved: float) -> float:
        """Lower bound of the time for ``madds`` multiply-adds and ``bytes_moved`` bytes of memory traffic."""
        return max(2 * madds / (self.gflops * 1e9), bytes_moved / (self.bandwidth_gbs * 1e9)) * 1e3

    def describe(self) -> str:
        return (f"{cpu_name()} ({os.cpu_count()} cores visible), {self.threads} thread(s): peak float32 matmul "
                f"{self.gflops:.1f} GFLOP/s, copy bandwidth {self.bandwidth_gbs:.1f} GB/s")


FLOOR = "weights + every conv/linear layer's input and output"


def _profile_layers_bytes(model: nn.Module, input_size: tuple[int, int], in_chans: int, batch: int) -> float:
    """Total bytes moved per :func:`ghostnets.measure.profile_layers`."""
    from .layers import profile_layers

    return float(profile_layers(model, input_size=input_size, in_chans=in_chans, batch=batch).bytes_moved)


def activation_bytes(model: nn.Module, input_size: tuple[int, int], in_chans: int, batch: int) -> float:
    """Weights read once + input read and output written by every convolution and linear layer, float32.

    What an executor that fuses every element-wise op into the layer before it must still move (no reuse of
    activations across layers through the caches): a floor of the traffic, not what the runtimes move.
    """
    moved = [0]

    def hook(module, inputs, output):
        moved[0] += inputs[0].numel() * inputs[0].element_size() + output.numel() * output.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    try:
        with torch.inference_mode():
            model(torch.zeros(batch, in_chans, *input_size))
    finally:
        for h in handles:
            h.remove()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return float(weights + moved[0])


def bytes_moved(model: nn.Module, input_size: tuple[int, int], in_chans: int, batch: int) -> tuple[float, str]:
    """Bytes one batch moves to and from memory, and where the figure comes from: ``profile_layers`` (every kernel
    of an unfused pass reads its inputs and weights and writes its output) where it exists, else :data:`FLOOR`."""
    try:
        return _profile_layers_bytes(model, input_size, in_chans, batch), "profile_layers"
    except Exception:  # a model the profiler cannot take: fall back to the hooks
        pass
    return activation_bytes(model, input_size, in_chans, batch), FLOOR

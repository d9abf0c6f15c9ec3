"""Peak resident memory of a block of work (a runtime's load and warm-up), from the kernel's own counters."""

from __future__ import annotations

import contextlib
import ctypes
import gc
from pathlib import Path


def _status_kb(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM) to the current RSS (Linux >= 4.0: ``clear_refs`` 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _trim_heap() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc), so new allocations show as a rise of RSS."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL(None).malloc_trim(0)


class PeakMemory:
    """MB the process's resident memory rose by inside the ``with`` block.

    VmHWM is process-wide and only grows, so it is reset on entry (``/proc/self/clear_refs``) after garbage is
    collected and the heap trimmed; then ``mb`` = peak RSS in the block - RSS on entry and ``kind`` = ``"peak"``.
    Where the reset is refused, ``mb`` is RSS on exit - RSS on entry (``kind`` = ``"rss increase"``: an allocation
    freed before exit is missed). Memory that earlier work freed but an allocator kept (onnxruntime's and OpenVINO's
    arenas, glibc's untrimmed arenas) may be reused and not show.
    """

    def __enter__(self) -> PeakMemory:
        _trim_heap()
        self.kind = "peak" if _reset_peak() else "rss increase"
        self._start = _status_kb("VmRSS")
        self.mb: float | None = None
        return self

    def __exit__(self, *exc) -> None:
        end = _status_kb("VmHWM" if self.kind == "peak" else "VmRSS")
        if self._start is not None and end is not None:
            self.mb = max(0, end - self._start) / 1024

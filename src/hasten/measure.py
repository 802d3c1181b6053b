"""Timing, memory and statistics: warm up, repeat until the median is stable, keep every sample."""

from __future__ import annotations

import ctypes
import gc
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

# Two memory figures closer than this are one figure: the allocator's caches and arenas move a
# process's resident size by a few MiB between runs of the very same work.
MEMORY_NOISE_MB = 4.0
MEMORY_NOISE_SHARE = 0.05


def memory_words(device: str) -> str:
    """hasten's one definition of a candidate's peak memory, as the reports write it."""
    if device == "cuda":
        return "the peak GPU memory PyTorch allocated while the candidate ran"
    return ("the candidate's own memory: the peak resident memory while it ran, above what its "
            "process held before the model was built (Python, PyTorch and the runtime's "
            "libraries), so its weights in their format, activations and workspace")


@dataclass(frozen=True)
class Budget:
    """How long to measure one point."""

    warmup: int = 2
    min_reps: int = 5
    max_reps: int = 200
    seconds: float = 3.0
    rel_tol: float = 0.02


def stats(samples: list[float]) -> dict:
    """Latency statistics in milliseconds from samples in seconds."""
    ms = sorted(s * 1000 for s in samples)
    n = len(ms)

    def pct(q: float) -> float:
        return ms[min(n - 1, round(q * (n - 1)))]

    return {
        "p50": statistics.median(ms),
        "p90": pct(0.90),
        "p99": pct(0.99),
        "mean": statistics.fmean(ms),
        "std": statistics.stdev(ms) if n > 1 else 0.0,
        "min": ms[0],
        "max": ms[-1],
        "iqr": pct(0.75) - pct(0.25),
        "count": n,
    }


def _stable(samples: list[float], rel_tol: float) -> bool:
    tail = max(1, len(samples) // 4)
    before = statistics.median(samples[:-tail])
    now = statistics.median(samples)
    return abs(now - before) <= rel_tol * now


def _torch():
    """PyTorch, imported where a GPU is timed or read: a Keras trial process never loads it."""
    import torch

    return torch


class Clock:
    """Wall-clock timer; on CUDA it records events and synchronizes, so kernels are counted."""

    def __init__(self, cuda: bool = False):
        self.cuda = cuda and _torch().cuda.is_available()

    def time(self, fn: Callable[[], object]) -> float:
        if self.cuda:
            torch = _torch()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1000
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


def repeat(fn: Callable[[], object], budget: Budget, clock: Clock | None = None) -> list[float]:
    """Warm up, then time `fn` until the median is stable or the budget is spent.

    At least `min_reps` samples (and never fewer than three) are always taken, however slow
    `fn` is: the statistics' sample count does not depend on the machine's speed.
    """
    clock = clock or Clock()
    for _ in range(budget.warmup):
        fn()
    samples: list[float] = []
    least = max(3, budget.min_reps)
    started = time.perf_counter()
    while len(samples) < max(least, budget.max_reps):
        samples.append(clock.time(fn))
        n = len(samples)
        if n < least:
            continue
        if _stable(samples, budget.rel_tol) or time.perf_counter() - started > budget.seconds:
            break
    return samples


class MemoryWatch:
    """The memory a candidate itself holds while it runs: the process's resident peak above a
    floor read before the candidate's model was built (Python, PyTorch and the runtime's
    libraries already loaded), so weights in their format, activations and workspace count,
    and what loading PyTorch cost the process does not.

    On Linux the kernel's high-water mark (VmHWM) is reset by `restart`, once what the
    candidate no longer needs is released, so the peak is that of the timed work alone.
    Elsewhere the lifetime peak stands in, and the figure includes the build.
    """

    def __init__(self) -> None:
        self.floor = _resident_mb()
        self.exact = _reset_peak()

    def restart(self) -> None:
        """Release what is garbage and start the peak afresh from what is held now."""
        gc.collect()
        _trim_heap()
        self.exact = _reset_peak()

    def peak_mb(self) -> float:
        """The process's resident peak since the last restart (MiB), the whole process."""
        if self.exact:
            status = open("/proc/self/status").read()
            return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
        return peak_memory_mb()

    def held_mb(self) -> float:
        """The candidate's own memory: the peak above the floor (MiB)."""
        return max(0.0, self.peak_mb() - self.floor)


def memory_noise_mb(figure_mb: float) -> float:
    """How far apart two memory figures near this one must be to differ by measurement."""
    return max(MEMORY_NOISE_MB, MEMORY_NOISE_SHARE * figure_mb)


def busy_trials(trials: list[dict], threads: int) -> int:
    """How many trials ran while the machine's load exceeded what the trial itself uses (its
    threads plus one): their numbers are likely disturbed by other work."""
    return sum(1 for t in trials
               if t["latency"] and t["latency"].get("load_avg", 0) > threads + 1)


def least_memory(rows: list[dict], memory: Callable[[dict], float | None],
                 speed: Callable[[dict], float | None]) -> dict | None:
    """The row to recommend for memory: the fastest (highest `speed`) of those whose memory is
    within the measurement's noise of the least, so that a saving smaller than the noise is
    never bought with speed."""
    measured = [r for r in rows if memory(r) is not None and speed(r) is not None]
    if not measured:
        return None
    least = min(memory(r) for r in measured)
    close = [r for r in measured if memory(r) <= least + memory_noise_mb(least)]
    return max(close, key=speed)


def _resident_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _reset_peak() -> bool:
    """Reset the kernel's resident high-water mark to the current size (Linux only)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _trim_heap() -> None:
    """Hand freed heap pages back to the system (glibc), so freed memory leaves the figure."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MiB (peak GPU memory is reported apart)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def peak_gpu_memory_mb() -> float | None:
    """Peak memory PyTorch allocated on the GPU in this process, in MiB."""
    torch = _torch()
    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20

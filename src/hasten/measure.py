"""Timing, memory and statistics: warm up, repeat until the median is stable, keep every sample."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


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


class Clock:
    """Wall-clock timer; on CUDA it records events and synchronizes, so kernels are counted."""

    def __init__(self, cuda: bool = False):
        self.cuda = cuda and torch.cuda.is_available()

    def time(self, fn: Callable[[], object]) -> float:
        if self.cuda:
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

    At least three samples are always taken, so a spread can be reported.
    """
    clock = clock or Clock()
    for _ in range(budget.warmup):
        fn()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < budget.max_reps:
        samples.append(clock.time(fn))
        n = len(samples)
        if n >= max(3, budget.min_reps) and _stable(samples, budget.rel_tol):
            break
        if n >= 3 and time.perf_counter() - started > budget.seconds:
            break
    return samples


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MiB (peak GPU memory is reported apart)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def peak_gpu_memory_mb() -> float | None:
    """Peak memory PyTorch allocated on the GPU in this process, in MiB."""
    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20

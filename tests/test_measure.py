"""Timing statistics, the repeat loop's stopping rules, and memory figures."""

from __future__ import annotations

import statistics
import time

import pytest

from hasten.measure import Budget, Clock, peak_gpu_memory_mb, peak_memory_mb, repeat, stats


class FakeClock:
    """Returns scripted durations instead of timing, calling fn each time like Clock does."""

    def __init__(self, durations):
        self.durations = iter(durations)

    def time(self, fn):
        fn()
        return next(self.durations)


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1


def test_stats_on_known_samples():
    samples = [i / 1000 for i in range(10, 0, -1)]  # 10 ms .. 1 ms, unsorted
    s = stats(samples)
    assert s["count"] == 10
    assert s["p50"] == pytest.approx(5.5)
    assert s["mean"] == pytest.approx(5.5)
    assert (s["min"], s["max"]) == (pytest.approx(1.0), pytest.approx(10.0))
    assert s["p90"] == pytest.approx(9.0)
    assert s["p99"] == pytest.approx(10.0)
    assert s["iqr"] == pytest.approx(5.0)
    assert s["std"] == pytest.approx(statistics.stdev(range(1, 11)))


def test_stats_of_one_sample():
    s = stats([0.002])
    assert s["count"] == 1 and s["std"] == 0.0
    assert s["p50"] == s["p90"] == s["p99"] == s["min"] == s["max"] == pytest.approx(2.0)


def test_repeat_stops_when_the_median_is_stable():
    fn = Counter()
    samples = repeat(fn, Budget(warmup=2, min_reps=5, max_reps=100, seconds=60),
                     FakeClock([0.01] * 100))
    assert samples == [0.01] * 5
    assert fn.calls == 2 + 5  # warm-up calls are not samples


def test_repeat_keeps_going_while_unstable_until_max_reps():
    # Each sample doubles, so the median never settles; max_reps ends it.
    durations = [0.001 * 2**i for i in range(60)]
    samples = repeat(Counter(), Budget(warmup=0, min_reps=5, max_reps=12, seconds=60),
                     FakeClock(durations))
    assert samples == durations[:12]


def test_repeat_stops_when_the_time_budget_is_spent():
    durations = [0.001 * 2**i for i in range(60)]
    samples = repeat(Counter(), Budget(warmup=0, min_reps=5, max_reps=100, seconds=0.0),
                     FakeClock(durations))
    assert samples == durations[:5]


def test_repeat_takes_min_reps_however_slow_the_machine():
    # The budget is spent after the first sample; the count still does not depend on speed.
    durations = [0.001 * 2**i for i in range(60)]
    samples = repeat(Counter(), Budget(warmup=0, min_reps=50, max_reps=100, seconds=0.0),
                     FakeClock(durations))
    assert samples == durations[:50]


def test_repeat_with_a_real_clock_takes_at_least_three_samples():
    samples = repeat(lambda: time.sleep(0.002), Budget(warmup=1, min_reps=3, seconds=0.0))
    assert len(samples) >= 3
    assert all(s >= 0.0015 for s in samples)


def test_repeat_takes_three_samples_even_with_min_reps_two():
    samples = repeat(Counter(), Budget(warmup=0, min_reps=2, max_reps=5, seconds=0.0),
                     FakeClock([0.05] * 10))
    assert len(samples) >= 3


def test_repeat_with_min_reps_one():
    samples = repeat(Counter(), Budget(warmup=0, min_reps=1, max_reps=5, seconds=60),
                     FakeClock([0.05] * 10))
    assert len(samples) >= 3


def test_clock_times_wall_clock():
    assert 0.009 <= Clock().time(lambda: time.sleep(0.01)) < 1.0


def test_memory_figures():
    assert peak_memory_mb() > 10  # this process holds torch
    assert peak_gpu_memory_mb() is None  # the CPU-only torch sees no GPU

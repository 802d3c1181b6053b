"""Interleaved confirmation's shared part: forms timed in rotating rounds, speedups taken round
by round, each form started once the others' processes are idle."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from hasten import rounds


class Sleeper:
    """A stand-in for a form's worker process: each request sleeps per call."""

    class proc:  # noqa: N801 - shaped like Form.proc
        pid = 2**22 + 1  # no such process: it is always idle

    def __init__(self, name: str, seconds: float, calls: list[str]):
        self.name, self.seconds, self.calls = name, seconds, calls

    def time(self, point: str, calls: int) -> float:
        samples = []
        for _ in range(calls):
            self.calls.append(self.name)
            started = time.perf_counter()
            time.sleep(self.seconds)
            samples.append(time.perf_counter() - started)
        return sorted(samples)[len(samples) // 2]


def test_rounds_rotate_and_speedups_come_round_by_round():
    calls: list[str] = []
    names = ["base", "fast", "slow"]
    forms = {n: Sleeper(n, s, calls) for n, s in zip(names, (0.01, 0.001, 0.05), strict=True)}
    per_round = rounds.confirm(names, forms, "b8", rounds=3, pause_s=0.0)
    assert {n: len(t) for n, t in per_round.items()} == dict.fromkeys(names, 3)
    # After one probe call each, every round starts one form later.
    timed = calls[len(names):]
    starts = [timed[0]]
    for before, now in zip(timed, timed[1:], strict=False):
        if now != before and len(starts) < 9:
            starts.append(now)
    assert starts == ["base", "fast", "slow", "fast", "slow", "base", "slow", "base", "fast"]
    summary = rounds.summarize(per_round, "base")
    assert summary["base"]["speedup"] == summary["base"]["speedup_low"] == 1.0
    # Sleeps only overshoot, by the scheduler's delay: these bounds hold on a loaded machine.
    assert summary["fast"]["speedup"] > 1.0 > summary["slow"]["speedup"]
    assert summary["slow"]["speedup_high"] < 0.5
    assert summary["fast"]["p50"] == pytest.approx(
        sorted(per_round["fast"])[1] * 1000)
    assert all(s["rounds"] == 3 for s in summary.values())


def test_a_form_waits_until_the_other_forms_processes_are_idle():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.5)  # both started
        assert rounds.settle([idle.pid], pause_s=0.0) < rounds.SETTLE_MAX_S
        # A process that keeps a core busy (a runtime's spinning workers) holds the next form
        # back, up to the longest wait.
        assert rounds.settle([idle.pid, busy.pid], pause_s=0.0) >= rounds.SETTLE_MAX_S
    finally:
        for proc in (busy, idle):
            proc.kill()
            proc.wait()

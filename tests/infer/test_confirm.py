"""Interleaved confirmation: forms timed in rotating rounds, speedups taken round by round."""

from __future__ import annotations

import time

import pytest

from hasten.infer import confirm
from hasten.measure import Clock


def test_rounds_rotate_and_speedups_come_round_by_round():
    calls = []

    def sleeper(name: str, seconds: float):
        def run(_inputs):
            calls.append(name)
            time.sleep(seconds)
        return run

    names = ["base", "fast", "slow"]
    runners = {"base": sleeper("base", 0.01), "fast": sleeper("fast", 0.001),
               "slow": sleeper("slow", 0.05)}
    per_round = confirm.confirm(names, runners, dict.fromkeys(names), Clock(), rounds=3,
                                pause_s=0.0)
    assert {n: len(t) for n, t in per_round.items()} == dict.fromkeys(names, 3)
    # After one warm-up and one probe call each, every round starts one form later.
    timed = calls[2 * len(names):]
    starts = [timed[0]]
    for before, now in zip(timed, timed[1:], strict=False):
        if now != before and len(starts) < 9:
            starts.append(now)
    assert starts == ["base", "fast", "slow", "fast", "slow", "base", "slow", "base", "fast"]
    summary = confirm.summarize(per_round, "base")
    assert summary["base"]["speedup"] == summary["base"]["speedup_low"] == 1.0
    # Sleeps only overshoot, by the scheduler's delay: these bounds hold on a loaded machine.
    assert summary["fast"]["speedup"] > 1.0 > summary["slow"]["speedup"]
    assert summary["slow"]["speedup_high"] < 0.5
    assert summary["fast"]["p50"] == pytest.approx(
        sorted(per_round["fast"])[1] * 1000)
    assert all(s["rounds"] == 3 for s in summary.values())

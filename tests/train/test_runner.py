"""The runner's pure parts: the quality gate against fp32, the final loss, the memory watch."""

from __future__ import annotations

import math

import numpy as np

from hasten.measure import MemoryWatch
from hasten.train.runner import final_loss, gate, tail_spread


def outcome(final: float, evaluation: dict | None = None, spread: float = 0.0) -> dict:
    return {"diverged": None, "final_loss": final, "final_loss_spread": spread,
            "eval": evaluation}


def test_gate_on_the_first_eval_metric():
    base = outcome(0.5, {"accuracy": 0.90, "loss": 0.4})
    assert gate(outcome(0.9, {"accuracy": 0.895}), base, 0.01)[0]
    passed, reason = gate(outcome(0.5, {"accuracy": 0.88}), base, 0.01)
    assert not passed and reason == "accuracy 0.88 against fp32's 0.9"
    lower = outcome(0.5, {"loss": 0.40})
    assert gate(outcome(0.5, {"loss": 0.403}), lower, 0.01)[0]
    assert not gate(outcome(0.5, {"loss": 0.41}), lower, 0.01)[0]
    assert not gate(outcome(0.5, {"accuracy": math.nan}), base, 0.01)[0]


def test_gate_on_the_final_loss_allows_fp32s_own_spread():
    base = outcome(1.0, spread=0.05)
    assert gate(outcome(1.04), base, 0.01)[0]
    passed, reason = gate(outcome(1.06), base, 0.01)
    assert not passed and "allowed 0.05 more" in reason
    assert not gate({**outcome(1.0), "diverged": "the loss went nan at step 3"}, base, 0.01)[0]
    assert gate(outcome(math.inf), base, 0.01) == (False,
                                                   "diverged: the final loss is not finite")


def test_final_loss_is_the_mean_of_the_last_tenth():
    losses = [float(x) for x in range(1, 21)]
    assert final_loss(losses) == 19.5
    assert tail_spread(losses) == np.std([19, 20], ddof=1)
    assert final_loss([3.0]) == 3.0 and tail_spread([3.0]) == 0.0


def test_memory_watch_sees_what_the_process_allocates_after_it_starts():
    before = np.ones(50 * 2**20 // 8)  # allocated before the watch: not counted
    watch = MemoryWatch()
    block = np.ones(200 * 2**20 // 8)
    block[::512] = 2.0
    assert 180 < watch.held_mb() < 300
    del block
    watch.restart()  # the block is freed: the peak starts again from what is held now
    assert watch.held_mb() < 100
    del before

"""The runner's pure parts: the final loss, the memory watch."""

from __future__ import annotations

import numpy as np

from hasten.measure import MemoryWatch
from hasten.train.runner import final_loss, tail_spread


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

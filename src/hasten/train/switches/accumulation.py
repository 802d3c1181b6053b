"""Gradient accumulation: one optimizer step over several micro-batches, so a batch that does
not fit in memory at once still trains."""

from __future__ import annotations

from hasten.train.settings import TrainSettings
from hasten.train.switches import Switch, register

MICRO_BATCHES = 4


class Accumulation(Switch):
    name, order, accumulation, stage = f"accumulate-{MICRO_BATCHES}", 40, MICRO_BATCHES, "after"

    def unavailable(self, facts: dict, settings: TrainSettings) -> str | None:
        if settings.batch_size % self.accumulation:
            return (f"accumulating {self.accumulation} micro-batches needs a batch size "
                    f"divisible by {self.accumulation}, not {settings.batch_size}")
        return None

    def code(self, device: str) -> list[str]:
        n = self.accumulation
        return [f"# call optimizer.step() every {n} micro-batches of batch_size/{n}, dividing "
                f"each loss by {n}"]


register(Accumulation())

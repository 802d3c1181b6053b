"""The settings of a training study: the shared ones plus the recipe and how to train it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from hasten.config import Settings
from hasten.errors import HastenError


@dataclass(frozen=True)
class TrainSettings(Settings):
    """A training study's settings; `point_s` is how long each speed run is timed, and
    `model` what the recipe's model offers the switches (hasten.train.switches.describe).
    `keras_backend` (tensorflow or torch) is set for a Keras recipe only: every trial runs
    Keras on it."""

    kind: ClassVar[str] = "train"

    recipe: str
    steps: int
    batch_size: int
    eval: bool
    devices: int
    memory_budget_mb: float
    seed: int = 0
    keras_backend: str | None = None

    def check(self) -> None:
        super().check()
        if self.steps < 1 or self.batch_size < 1 or self.devices < 1:
            raise HastenError("`steps`, `batch_size` and `devices` must each be at least 1.")
        if self.device == "cuda":
            import torch

            if self.devices > torch.cuda.device_count():
                raise HastenError(f"`devices` {self.devices} asks for more GPUs than the "
                                  f"{torch.cuda.device_count()} PyTorch sees.")
        if self.memory_budget_mb <= 0:
            raise HastenError("`memory_budget_mb` must be more than zero.")

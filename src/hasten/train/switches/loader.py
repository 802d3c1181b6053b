"""DataLoader settings: worker processes that prepare batches while the model trains (kept
alive between epochs, or not), and pinned memory for faster copies to a GPU."""

from __future__ import annotations

from typing import Any

from hasten.train.settings import TrainSettings
from hasten.train.switches import Switch, register

WORKERS = 2


class Workers(Switch):
    group, stage = "loader", "after"

    def __init__(self, persistent: bool, order: int):
        self.persistent, self.order = persistent, order
        self.name = f"workers-{WORKERS}" + ("-persistent" if persistent else "")

    def loader(self, kwargs: dict, dataset: Any) -> dict:
        return {**kwargs, "num_workers": WORKERS, "persistent_workers": self.persistent}

    def loader_code(self) -> list[str]:
        return [f"num_workers={WORKERS}"] + (["persistent_workers=True"] if self.persistent
                                             else [])


class PinnedMemory(Switch):
    name, order, group, stage = "pinned-memory", 130, "loader", "after"

    def unavailable(self, facts: dict, settings: TrainSettings) -> str | None:
        if settings.device != "cuda":
            return "pinned memory speeds up copies to a GPU; this study runs on the CPU"
        return None

    def loader(self, kwargs: dict, dataset: Any) -> dict:
        return {**kwargs, "pin_memory": True}

    def loader_code(self) -> list[str]:
        return ["pin_memory=True"]


register(Workers(False, 110), Workers(True, 120), PinnedMemory())

"""Typed study settings: the part every study shares, checked once and stored with the study.
The inference and training parts extend it (hasten.infer.settings, hasten.train.settings)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Self

from hasten.errors import HastenError

DEVICES = ("cpu", "cuda")
# Stored settings renamed since they were first written, old name: new name; a study folder
# written before is read with the new names (`point_s` was `budget_s` until 2026-12).
RENAMED = {"budget_s": "point_s"}


def check_max_drop(max_drop: float) -> None:
    """The fidelity tolerance is a fraction: more than 0 and less than 1."""
    if not 0 < max_drop < 1:
        raise HastenError(f"`max_drop` must be between 0 and 1, not {max_drop}.")


@dataclass(frozen=True)
class Settings:
    """What every study is run with. `kind` names the study ("infer", "train" or
    "generate"); `point_s` is how long each point (or speed run) is timed; `model` is what
    hasten found out about the model, stored so that reports need not load it again."""

    kind: ClassVar[str] = ""

    device: str
    max_drop: float
    quick: bool
    threads: int
    point_s: float
    baseline: str
    model: dict

    def check(self) -> None:
        """Raise a HastenError naming the first setting that cannot work."""
        if self.device not in DEVICES:
            raise HastenError(f"`device` must be cpu or cuda, not {self.device!r}.")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise HastenError("`device` cuda was asked for, but PyTorch sees no CUDA "
                                  "GPU here.")
        check_max_drop(self.max_drop)
        if not self.point_s > 0:
            raise HastenError(f"`point_s` must be more than 0 s, not {self.point_s}.")

    def to_dict(self) -> dict:
        """The settings as stored with the study (JSON types only)."""
        out = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
        return out

    @staticmethod
    def upgrade(stored: dict) -> dict:
        """Stored settings with the names this version gives them."""
        return {RENAMED.get(k, k): v for k, v in stored.items()}

    @classmethod
    def from_dict(cls, stored: dict) -> Self:
        """The settings a study folder holds; settings of another kind are refused."""
        stored = cls.upgrade(stored)
        if stored.get("kind") != cls.kind:
            raise HastenError(f"These settings are of a {stored.get('kind') or 'unknown'} "
                              f"study, not of a {cls.kind} study.")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**cls._decode({k: v for k, v in stored.items() if k in names}))

    @classmethod
    def _decode(cls, fields: dict) -> dict:
        """Turn stored field values back into their types (a subclass's nested settings)."""
        return fields

"""The settings of an inference study: the shared ones plus the model spec and the workload."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from hasten.config import Settings
from hasten.errors import HastenError
from hasten.infer.workload import Workload


@dataclass(frozen=True)
class InferSettings(Settings):
    """An inference study's settings; `point_s` is how long each workload point is timed."""

    kind: ClassVar[str] = "infer"

    spec: str
    task: str | None
    input_shape: list[int] | None
    workload: Workload

    def check(self) -> None:
        super().check()
        if self.workload.calibration_samples < 1:
            raise HastenError("`calibration_samples` must be at least 1, not "
                              f"{self.workload.calibration_samples}.")

    def to_dict(self) -> dict:
        """The settings as stored with the study: the workload's samples described, not listed
        (they go to the study folder's samples.json)."""
        return {**super().to_dict(), "workload": self.workload.describe()}

    @classmethod
    def _decode(cls, fields: dict) -> dict:
        return {**fields, "workload": Workload.from_dict(fields["workload"])}

    def hugging_face(self) -> bool:
        """Whether the model comes from transformers (the demo or an hf: folder)."""
        return self.spec == "demo" or self.spec.startswith("hf:")

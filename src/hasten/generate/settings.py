"""The settings of a generation study: the shared ones (`model` holds the decoder's facts),
the model spec and the workload."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from hasten.config import Settings
from hasten.errors import HastenError
from hasten.generate.workload import GenerateWorkload


@dataclass(frozen=True)
class GenerateSettings(Settings):
    """A generation study's settings; `point_s` is how long each point is timed and
    `max_drop` the largest relative increase of perplexity a candidate may cost."""

    kind: ClassVar[str] = "generate"

    spec: str
    workload: GenerateWorkload

    def check(self) -> None:
        super().check()
        workload, limit = self.workload, self.model["max_length"]
        if workload.new_tokens < 1:
            raise HastenError(f"`new_tokens` must be at least 1, not {workload.new_tokens}.")
        if not workload.batch_sizes or any(b < 1 or b > 256 for b in workload.batch_sizes):
            raise HastenError("Batch sizes of a generation study must be between 1 and 256, "
                              f"not {workload.batch_sizes}.")
        longest = max(workload.prompt_lengths, default=0) + workload.new_tokens
        if not workload.prompt_lengths or min(workload.prompt_lengths) < 2 or longest > limit:
            raise HastenError(
                f"{self.model['name']} attends to at most {limit} positions, and prompt lengths "
                f"{workload.prompt_lengths} plus {workload.new_tokens} new tokens need "
                f"{longest}; give --prompt-lengths of at least 2 tokens and at most "
                f"{limit - workload.new_tokens}.")

    @classmethod
    def _decode(cls, fields: dict) -> dict:
        return {**fields, "workload": GenerateWorkload.from_dict(fields["workload"])}

"""What a training study has decided beside its trial rows, as one typed record: the study
reads it to resume where it stopped, and the views read it to show the study. Each field is
kept under its own key of the store's meta table, so folders written before read the same."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hasten.store import Meta

# What `meta` answers for a key the store does not hold.
_ABSENT = object()


@dataclass
class TrainState:
    """`audit`: the numerics audit's verdict (its trial writes it), or why it did not run
    ({"error", "cut"}); `too_slow`: precision modes not trained to the end, with why;
    `combined`: the combination of the best switches, None when there is none, and
    `combined_decided` whether that was decided (it is, once); `batch_search`: the batch-size
    search's probes and summary, `finished` unless the time budget stopped it."""

    audit: dict | None = None
    too_slow: dict[str, str] = field(default_factory=dict)
    combined: str | None = None
    combined_decided: bool = False
    batch_search: dict | None = None

    @classmethod
    def read(cls, meta: Callable[[str, object], object]) -> TrainState:
        """The record from a study's meta table (`meta(key, default)`: Store.meta, or a
        study's dict's get)."""
        combined = meta(Meta.COMBINED, _ABSENT)
        return cls(audit=meta(Meta.AUDIT, None), too_slow=meta(Meta.TOO_SLOW, None) or {},
                   combined=None if combined is _ABSENT else combined,
                   combined_decided=combined is not _ABSENT,
                   batch_search=meta(Meta.BATCH_SEARCH, None))

    def save(self, store, name: str) -> None:
        """Keep one field in the store (the same call resumes from it)."""
        store.set_meta(Meta(name), getattr(self, name))

    def needs_audit(self) -> bool:
        """Whether the audit is still to run: never tried, or left out by the time budget."""
        return self.audit is None or bool(self.audit.get("cut"))

    def audit_verdict(self) -> dict | None:
        """The audit's result when it ran, else None."""
        return self.audit if self.audit and "verdict" in self.audit else None

"""Inference candidates: a chain of passes plus a runtime with its settings, under a stable
name. The search's menu is its own list plus what pass modules offer, so that a pass module
brings the candidates that measure it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Candidate:
    """A chain of passes plus a runtime with its settings, under a stable name."""

    name: str
    passes: tuple[str, ...]
    runtime: str
    settings: dict = field(default_factory=dict, hash=False)
    in_quick: bool = True


def candidate(name: str, chain: tuple[str, ...], runtime: str, settings: dict | None = None,
              in_quick: bool = True) -> Candidate:
    return Candidate(name, tuple(chain), runtime, settings or {}, in_quick)


# Candidates pass modules add to the menu, after the search's own.
OFFERED: list[Candidate] = []


def offer(*candidates: Candidate) -> None:
    """Add candidates to the menu (from the module of the passes they measure)."""
    OFFERED.extend(candidates)

"""The rule registry: each rule is a check function over a parsed file plus the facts a user
needs (what it finds, why it costs, the fix, the hasten candidate that measures the fix)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import libcst as cst

from hasten.lint.source import Source


@dataclass(frozen=True)
class Hit:
    """What a check found: the node, the message, and a safe replacement node if any."""

    node: cst.CSTNode
    message: str
    replacement: cst.CSTNode | None = None


Check = Callable[[Source], Iterator[Hit]]


@dataclass(frozen=True)
class Rule:
    """A rule's stable code and name, its explanation, and the candidates that measure it
    (`train`: a `hasten train` candidate, `infer`: a `hasten infer` one). A safety rule has
    none: there is nothing to time."""

    code: str
    name: str
    what: str
    why: str
    checklist: str
    fix: str
    check: Check
    train: str | None = None
    infer: str | None = None
    fixable: bool = False

    def measured_by(self) -> str:
        """The candidates that measure the fix, as a user would run them."""
        parts = [f"hasten train candidate `{self.train}`" if self.train else "",
                 f"hasten infer candidate `{self.infer}`" if self.infer else ""]
        return " and ".join(p for p in parts if p) or "nothing to time: a safety fix"


REGISTRY: dict[str, Rule] = {}


def rule(code: str, name: str, *, what: str, why: str, checklist: str, fix: str,
         train: str | None = None, infer: str | None = None,
         fixable: bool = False) -> Callable[[Check], Check]:
    """Register the decorated check function under a stable code."""

    def register(check: Check) -> Check:
        if code in REGISTRY:
            raise ValueError(f"rule {code} is registered twice")
        REGISTRY[code] = Rule(code, name, what, why, checklist, fix, check, train, infer,
                              fixable)
        return check

    return register

"""Running one of TorchFix's checks on a parsed file, so that a rule TorchFix already has is
used rather than written again."""

from __future__ import annotations

import libcst as cst
from torchfix.common import TorchVisitor

from hasten.lint.source import Source


def violations(src: Source, visitor_class: type[TorchVisitor]
               ) -> list[tuple[cst.CSTNode, cst.CSTNode | None]]:
    """(node, TorchFix's replacement or None) for each violation the visitor finds."""
    visitor = visitor_class()
    src.wrapper.visit_batched([visitor])
    return [(v.node, v.replacement) for v in visitor.violations]

"""Running TorchFix's checks on a parsed file, so that a rule TorchFix already has is used
rather than written again. Its visitors run together in one batched pass per file."""

from __future__ import annotations

import libcst as cst
from torchfix.common import TorchVisitor
from torchfix.visitors import (
    TorchRequireGradVisitor,
    TorchSynchronizedDataLoaderVisitor,
    TorchUnsafeLoadVisitor,
)

from hasten.lint.source import Source

USED = (TorchRequireGradVisitor, TorchSynchronizedDataLoaderVisitor, TorchUnsafeLoadVisitor)


def violations(src: Source, visitor_class: type[TorchVisitor]
               ) -> list[tuple[cst.CSTNode, cst.CSTNode | None]]:
    """(node, TorchFix's replacement or None) for each violation the visitor finds."""
    if visitor_class not in src.visited:
        visitors = [cls() for cls in USED]
        src.wrapper.visit_batched(visitors)
        src.visited.update((type(v), v) for v in visitors)
    return [(v.node, v.replacement) for v in src.visited[visitor_class].violations]

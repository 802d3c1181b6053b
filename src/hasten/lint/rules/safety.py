"""Safety and silent bugs TorchFix knows: unsafe pickle loading, a misspelt requires_grad."""

from __future__ import annotations

from collections.abc import Iterator

from torchfix.visitors import TorchRequireGradVisitor, TorchUnsafeLoadVisitor

from hasten.lint.registry import Hit, rule
from hasten.lint.rules.torchfix_checks import violations
from hasten.lint.source import Source


@rule("HST112", "torch-load-unsafe",
      what="`torch.load` without `weights_only`.",
      why="Without it an old PyTorch unpickles anything, which runs code from the file; "
          "PyTorch 2.6 made `weights_only=True` the default, so saying it keeps the script "
          "safe on every version.",
      checklist="export and deployment: load weights, not pickled code",
      fix="`torch.load(path, weights_only=True)`; load a whole pickled model only from a file "
          "you trust, with `weights_only=False` said explicitly.",
      fixable=True)
def torch_load_unsafe(src: Source) -> Iterator[Hit]:
    # TorchFix's TOR102, with its fix (none when a pickle_module is passed).
    for node, replacement in violations(src, TorchUnsafeLoadVisitor):
        yield Hit(node, "`torch.load` without `weights_only=True` can run code from the file",
                  replacement)


@rule("HST117", "require-grad-typo",
      what="An assignment to `.require_grad`, a misspelling of `.requires_grad`.",
      why="The assignment makes a new attribute and changes nothing: the tensor trains (or "
          "stays frozen) against the author's intent, which costs memory and time.",
      checklist="memory-saving training: freeze what should not train",
      fix="`.requires_grad = ...` or `.requires_grad_(...)`.",
      fixable=True)
def require_grad_typo(src: Source) -> Iterator[Hit]:
    # TorchFix's TOR002, with its fix.
    for node, replacement in violations(src, TorchRequireGradVisitor):
        yield Hit(node, "`.require_grad` is a typo for `.requires_grad`", replacement)

"""hasten lint: the performance checklist read statically from the user's code, each finding
tied to the `hasten train`/`hasten infer` candidate that measures its fix. It parses (LibCST)
and never imports or runs the code it reads, nor torch."""

from hasten.lint.config import Selection, from_pyproject
from hasten.lint.registry import REGISTRY, Rule
from hasten.lint.run import Finding, Note, ParseFailure, Report, explain, lint

__all__ = ["REGISTRY", "Finding", "Note", "ParseFailure", "Report", "Rule", "Selection", "explain",
           "from_pyproject", "lint"]

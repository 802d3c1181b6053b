"""The link to the study: a `hasten train` recipe read statically (never imported), its
findings, and which candidate of its study measures each one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import libcst as cst

from hasten.errors import HastenError
from hasten.lint import files
from hasten.lint.config import EVERY_RULE, Selection
from hasten.lint.run import Finding, Report, lint

# The functions hasten.train.recipe requires of a recipe (kept in step by a test).
REQUIRED = ("model", "train_data", "loss")


@dataclass
class RecipeReport:
    """A recipe's lint report, split by whether `hasten train` measures each finding."""

    path: Path
    report: Report
    measured: list[Finding]
    not_measured: list[Finding]

    def lines(self) -> list[str]:
        out = [f"{f}  -> hasten train measures it as {f.rule.train}" for f in self.measured]
        out += [f"{f}  -> not measured by hasten train ("
                + (f"hasten infer candidate {f.rule.infer})" if f.rule.infer
                   else "nothing to time)") for f in self.not_measured]
        out.append(f"hasten train {self.path} measures {len(self.measured)} of "
                   f"{len(self.report.findings)} findings.")
        return out


def lint_recipe(path: Path, selection: Selection = EVERY_RULE) -> RecipeReport:
    """Lint a recipe and tie each finding to the `hasten train` candidate that measures it.
    A file that is not a recipe (no model(), train_data() or loss()) is refused."""
    if not path.is_file():
        raise HastenError(f"{path} does not exist.")
    report = lint([path], selection)
    if report.failures:
        raise HastenError(f"{report.failures[0]}.")
    module = cst.parse_module(files.read(path).text)
    defined = {s.name.value for s in module.body if isinstance(s, cst.FunctionDef)}
    missing = [f"{name}()" for name in REQUIRED if name not in defined]
    if missing:
        raise HastenError(f"{path} is not a hasten train recipe: it defines no "
                          f"{' or '.join(missing)}.")
    measured = [f for f in report.findings if f.rule.train]
    return RecipeReport(path, report, measured, [f for f in report.findings if not f.rule.train])

"""Linting files: find the Python files, parse each once, run the selected rules, drop what a
comment suppresses, and apply the safe fixes. A file that does not parse becomes one error and
the others are still checked."""

from __future__ import annotations

import difflib
import io
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst

from hasten.errors import HastenError
from hasten.lint import rules  # noqa: F401  (registers the rules)
from hasten.lint.config import EVERY_RULE, Selection
from hasten.lint.registry import REGISTRY, Hit, Rule
from hasten.lint.source import Source

NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+\d+(?:[\s,]+[A-Z]+\d+)*))?", re.I)
IGNORE = re.compile(r"#\s*hasten:\s*ignore\[(?P<codes>[^\]]*)\]", re.I)
ALL = "*"


@dataclass(frozen=True, order=True)
class Finding:
    """One rule's finding at one place."""

    path: str
    line: int
    column: int
    code: str
    message: str
    fixable: bool = False

    @property
    def rule(self) -> Rule:
        return REGISTRY[self.code]

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column} {self.code} {self.message}"


@dataclass(frozen=True, order=True)
class ParseFailure:
    """A file that could not be read or parsed."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column} cannot parse: {self.message}"


@dataclass
class Report:
    """Findings and parse failures, sorted, and the diffs of the fixes (when fixing)."""

    findings: list[Finding] = field(default_factory=list)
    failures: list[ParseFailure] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """2 when a file did not parse, 1 with findings, 0 when clean."""
        return 2 if self.failures else 1 if self.findings else 0


def python_files(paths: list[Path]) -> list[Path]:
    """The files to lint: each file given, and the .py files under each folder (hidden folders
    and caches left out), in a stable order."""
    out = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(
                p for p in path.rglob("*.py")
                if not any(part.startswith(".") or part == "__pycache__"
                           for part in p.relative_to(path).parts[:-1])))
        elif path.is_file():
            out.append(path)
        else:
            raise HastenError(f"{path} does not exist.")
    return list(dict.fromkeys(out))


def suppressed(text: str) -> dict[int, set[str]]:
    """Per line, the codes its `# noqa: CODE` or `# hasten: ignore[CODE]` comment suppresses
    (`*` for a bare `# noqa`)."""
    out: dict[int, set[str]] = {}
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type != tokenize.COMMENT:
            continue
        for pattern in (NOQA, IGNORE):
            for match in pattern.finditer(token.string):
                codes = match.group("codes")
                found = {c.upper() for c in re.split(r"[\s,]+", codes) if c} if codes else {ALL}
                out.setdefault(token.start[0], set()).update(found)
    return out


def _hits(src: Source, codes: list[str]) -> list[tuple[Rule, Hit]]:
    """The selected rules' hits that no comment suppresses."""
    quiet = suppressed(src.text)
    out = []
    for code in codes:
        for hit in REGISTRY[code].check(src):
            line = src.position(hit.node)[0]
            if not quiet.get(line, set()) & {code, ALL}:
                out.append((REGISTRY[code], hit))
    return out


class _Replace(cst.CSTTransformer):
    """Puts each fix's replacement in place of its original node."""

    def __init__(self, replacements: dict[cst.CSTNode, cst.CSTNode]) -> None:
        super().__init__()
        self.replacements = replacements

    def on_leave(self, original: cst.CSTNode, updated: cst.CSTNode) -> cst.CSTNode:
        return self.replacements.get(original, updated)


def _parse(path: Path, shown: str) -> Source | ParseFailure:
    try:
        return Source(path, path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        return ParseFailure(shown, 1, 1, f"not UTF-8 text ({exc.reason})")
    except cst.ParserSyntaxError as exc:
        return ParseFailure(shown, exc.editor_line, exc.editor_column,
                            " ".join(exc.message.split()))


def lint(paths: list[Path], selection: Selection = EVERY_RULE, fix: bool = False,
         write: bool = True) -> Report:
    """Lint files and folders. With fix, apply the safe fixes (writing the files when write,
    else only keeping their diffs) and report what remains."""
    codes = selection.codes()
    report = Report()
    for path in python_files(paths):
        shown = path.as_posix()
        src = _parse(path, shown)
        if isinstance(src, ParseFailure):
            report.failures.append(src)
            continue
        hits = _hits(src, codes)
        fixes = {h.node: h.replacement for _, h in hits if h.replacement is not None}
        if fix and fixes:
            fixed = src.module.visit(_Replace(fixes)).code
            report.diffs.append("".join(difflib.unified_diff(
                src.text.splitlines(keepends=True), fixed.splitlines(keepends=True),
                f"a/{shown}", f"b/{shown}")))
            if write:
                path.write_text(fixed, encoding="utf-8")
            hits = [(r, h) for r, h in hits if h.replacement is None]
        report.findings.extend(
            Finding(shown, *src.position(h.node), r.code, h.message, h.replacement is not None)
            for r, h in hits)
    report.findings.sort()
    report.failures.sort()
    return report


def explain(code: str) -> str:
    """A rule's page: what it finds, why it costs, the fix, and what measures the fix."""
    rule = REGISTRY.get(code.strip().upper())
    if rule is None:
        raise HastenError(f"{code} is no rule code; the codes are {min(REGISTRY)} to "
                          f"{max(REGISTRY)}.")
    return "\n".join([
        f"{rule.code} {rule.name}", "",
        f"What: {rule.what}",
        f"Why: {rule.why} (checklist: {rule.checklist})",
        f"Fix: {rule.fix}" + (" `hasten lint --fix` applies it." if rule.fixable else ""),
        f"Measured by: {rule.measured_by()}.",
    ])

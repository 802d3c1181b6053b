"""Linting files: find the Python files, parse each once, run the selected rules, drop what a
comment suppresses, and apply the safe fixes once every file is read. A file that does not
parse becomes one error and the others are still checked."""

from __future__ import annotations

import difflib
import io
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst

from hasten.errors import HastenError
from hasten.lint import (
    files,
    rules,  # noqa: F401  (registers the rules)
)
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


@dataclass(frozen=True, order=True)
class Note:
    """A file a fix was not written to, and why (its findings stay in the report)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Report:
    """Findings, parse failures and notes, sorted, and the diffs of the fixes (when fixing)."""

    findings: list[Finding] = field(default_factory=list)
    failures: list[ParseFailure] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """2 when a file did not parse, 1 with findings, 0 when clean."""
        return 2 if self.failures else 1 if self.findings else 0


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


def _parse(path: Path, shown: str) -> tuple[Source, files.Text] | ParseFailure:
    """The parsed file and its text as read, or why it could not be read or parsed."""
    try:
        text = files.read(path)
        return Source(path, text.text), text
    except OSError as exc:
        return ParseFailure(shown, 1, 1, f"unreadable ({exc.strerror or exc})")
    except UnicodeDecodeError as exc:
        return ParseFailure(shown, 1, 1, f"not {exc.encoding} text ({exc.reason})")
    except SyntaxError as exc:
        return ParseFailure(shown, 1, 1, exc.msg)
    except cst.ParserSyntaxError as exc:
        return ParseFailure(shown, exc.editor_line, exc.editor_column,
                            " ".join(exc.message.split()))


def lint(paths: list[Path], selection: Selection = EVERY_RULE, fix: bool = False,
         write: bool = True) -> Report:
    """Lint files and folders. With fix, apply the safe fixes (writing the files when write,
    else only keeping their diffs) and report what remains. Files are written only after every
    file is read, each safely (see files.write); one not written keeps its findings, with a note."""
    codes = selection.codes()
    report = Report()
    pending: list[tuple[Path, str, files.Text, list[Finding]]] = []
    for path in files.python_files(paths):
        shown = path.as_posix()
        parsed = _parse(path, shown)
        if isinstance(parsed, ParseFailure):
            report.failures.append(parsed)
            continue
        src, text = parsed
        hits = _hits(src, codes)
        found = [Finding(shown, *src.position(h.node), r.code, h.message,
                         h.replacement is not None) for r, h in hits]
        fixes = {h.node: h.replacement for _, h in hits if h.replacement is not None}
        if fix and fixes:
            fixed = src.module.visit(_Replace(fixes)).code
            report.diffs.append("".join(difflib.unified_diff(
                src.text.splitlines(keepends=True), fixed.splitlines(keepends=True),
                f"a/{shown}", f"b/{shown}")))
            if write:
                pending.append((path, fixed, text, [f for f in found if f.fixable]))
            found = [f for f in found if not f.fixable]
        report.findings.extend(found)
    for path, fixed, text, fixable in pending:
        why = files.write(path, fixed, text)
        if why:
            report.notes.append(Note(path.as_posix(), why))
            report.findings.extend(fixable)
    report.findings.sort()
    report.failures.sort()
    report.notes.sort()
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

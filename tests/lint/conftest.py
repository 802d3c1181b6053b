"""Helpers for the lint tests: lint a snippet written to a file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hasten.lint import Selection, lint


@pytest.fixture
def codes(tmp_path: Path):
    """codes(source, only=None) -> [(code, line)] the linter finds in that source."""

    def run(source: str, only: str | None = None, name: str = "snippet.py") -> list:
        path = tmp_path / name
        path.write_text(textwrap.dedent(source))
        report = lint([path], Selection((only,) if only else ()))
        assert not report.failures
        return [(f.code, f.line) for f in report.findings]

    return run

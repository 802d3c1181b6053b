"""Lint a folder of real training and inference scripts (fetched, not kept in the repo) and
print each file's findings counted by rule code, to judge how many are false."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from hasten.lint import lint


def main(folder: str) -> None:
    report = lint([Path(folder)])
    per_file: dict[str, Counter] = {}
    for finding in report.findings:
        per_file.setdefault(finding.path, Counter())[finding.code] += 1
    for failure in report.failures:
        print(failure)
    for path in sorted(per_file):
        counts = ", ".join(f"{code} {n}" for code, n in sorted(per_file[path].items()))
        print(f"{Path(path).name}: {counts}")
    print(f"{len(report.findings)} findings in {len(per_file)} files")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/lint_real_scripts.py FOLDER")
    main(sys.argv[1])

"""Views of studies: terminal tables, the HTML report with its plots, comparisons. Views read
studies and are never imported by them."""

from __future__ import annotations

from pathlib import Path

from hasten.infer.study import Study
from hasten.train.study import TrainStudy


def write_report(study: Study | TrainStudy, path: str | Path | None = None) -> Path:
    """Write a study's self-contained HTML report, by default report.html in its folder."""
    from hasten.report import html, train_html

    document = train_html.render(study) if isinstance(study, TrainStudy) else html.render(study)
    return html.write(document, Path(path) if path else study.folder / "report.html")

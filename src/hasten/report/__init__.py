"""Views of studies: terminal tables, the HTML report with its plots, comparisons. Views read
studies and are never imported by them."""

from __future__ import annotations

from pathlib import Path

from hasten.generate.study import GenerateStudy
from hasten.infer.study import Study
from hasten.train.study import TrainStudy


def write_report(study: Study | TrainStudy | GenerateStudy, path: str | Path | None = None
                 ) -> Path:
    """Write a study's self-contained HTML report, by default report.html in its folder."""
    from hasten.report import generate, html, train_html

    if isinstance(study, GenerateStudy):
        document = generate.render_html(study)
    elif isinstance(study, TrainStudy):
        document = train_html.render(study)
    else:
        document = html.render(study)
    return html.write(document, Path(path) if path else study.folder / "report.html")

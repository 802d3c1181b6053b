"""The Python API that the command line and users call: the two studies, opening a study
folder, comparing two studies, and the HTML report. It sits above the studies and the views,
so that neither imports the other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hasten.infer import run as infer_run
from hasten.infer.study import Study
from hasten.report import write_report
from hasten.report.compare import Comparison
from hasten.report.compare import compare as compare_studies
from hasten.store import Store
from hasten.train import run as train_run
from hasten.train.study import TrainStudy


def optimize_inference(model: str = "demo", *, report: bool = True, **options: Any) -> Study:
    """Run (or resume) an inference study of `model`, a model spec, and return it.

    Every candidate runs in its own process; finished trials are kept in the study folder's
    database, so running the same call again resumes instead of starting over. With `report`,
    the study folder gets its HTML report when the study ends, also when its baseline failed.
    `options` are those of hasten.infer.run.optimize_inference (data, batch_sizes, max_drop,
    time_budget_s, ...).
    """
    return infer_run.optimize_inference(model, report=write_report if report else None,
                                        **options)


def optimize_training(recipe: str | Path, *, report: bool = True, **options: Any) -> TrainStudy:
    """Run (or resume) a training study of a recipe file and return it; loading the recipe
    runs its code. `options` are those of hasten.train.run.optimize_training (steps,
    batch_size, max_drop, memory_budget_mb, ...)."""
    return train_run.optimize_training(recipe, report=write_report if report else None,
                                       **options)


def open_study(folder: str | Path) -> Study | TrainStudy:
    """The inference or training study a folder holds."""
    store_file = Path(folder) / "study.sqlite"
    if store_file.is_file():
        store = Store(Path(folder))
        try:
            kind = (store.meta("config") or {}).get("kind")
        finally:
            store.close()
        if kind == "train":
            return TrainStudy(folder)
    return Study(folder)


def compare(first: str | Path | Study, second: str | Path | Study) -> Comparison:
    """Two studies matched by candidate and workload point: ratios of their medians, and
    whether each difference exceeds both runs' own spread."""
    return compare_studies(first, second)


__all__ = ["compare", "open_study", "optimize_inference", "optimize_training", "write_report"]

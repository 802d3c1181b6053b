"""Benchmark: the `hasten train` demo, both recipes, as a newcomer runs it.

Runs `hasten train --fresh` (the digits CNN, then the MiniLM topic classifier with --quick)
and times the whole command; the target is under 10 minutes on 2 cores. Then prints, per
candidate of each study, what the issue asks to record: time per step, samples per second and
the speedup against 32-true measured in the same study, peak memory, final loss and the eval
metric next to fp32's, and the recommendation. Writes both studies as train_study.json.
Run by hand on a quiet machine: `python benchmarks/train_study.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from hasten.train.study import TrainStudy

HERE = Path(__file__).parent


def _cell(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def _table(study: TrainStudy) -> None:
    print(f"\n### {study.folder.name}: batch {study.settings.batch_size}, "
          f"{study.settings.steps} steps\n")
    print("| candidate | step p50 ms | IQR ms | samples/s | speedup | peak MiB | memory | "
          "final loss | eval | status |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in study.table():
        if row["status"] == "skipped":
            continue
        speed = row["speed"] or {}
        outcome = row["converge"] or {}
        metric = next(iter((outcome.get("eval") or {}).values()), None)
        print(f"| {row['candidate']} | {_cell(speed.get('p50'), '.1f')} | "
              f"{_cell(speed.get('iqr'), '.1f')} | {_cell(row['samples_per_s'], '.0f')} | "
              f"{_cell(row['speedup'], '.2f')} | {_cell(row['peak_mb'], '.0f')} | "
              f"{_cell(row['memory_ratio'], '.2f')} | {_cell(outcome.get('final_loss'), '.4f')} "
              f"| {_cell(metric, '.4f')} | {row['status']}"
              f"{' (time budget)' if row['budget_cut'] else ''} |")
    recs = study.recommendations()
    print(f"\nRecommended for time: {recs['time'] and recs['time']['candidate']}; "
          f"for memory: {recs['memory'] and recs['memory']['candidate']}.")
    search = study.batch_search or {}
    print(f"Batch-size search: largest {search.get('largest')} "
          f"({search.get('stopped')}).")
    print(f"Audit verdict: {(study.audit or {}).get('verdict', {}).get('choice')}.")


def main() -> None:
    runs = HERE / "runs" / "train"
    hasten = Path(sys.executable).with_name("hasten")
    started = time.perf_counter()
    subprocess.run([str(hasten), "train", "--fresh", "--out", str(runs), "--no-report"],
                   check=True, env={**os.environ, "COLUMNS": "250"})
    wall = time.perf_counter() - started
    print(f"\n`hasten train` (both demos) wall time: {wall:.0f} s")
    studies = [TrainStudy(runs / name) for name in ("demo-digits", "demo-text")]
    for study in studies:
        _table(study)
    (HERE / "train_study.json").write_text(json.dumps(
        {"wall_s": wall, "studies": [s.to_dict() for s in studies]}, indent=1, default=str))


if __name__ == "__main__":
    main()

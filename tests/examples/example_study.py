"""Running an example recipe as `hasten train RECIPE --quick` does, in a fresh process, with
few steps and a small time budget, and checking the study it gives (as `--json` prints it).
On a busy machine fp32's own runs (never cut) can spend the budget before any candidate is
timed; the same call again then goes on from them, as a user is told to.

The study is run through hasten.api rather than the command line for one setting only: each
speed run is timed for POINT_S seconds instead of the command line's 3 s, so that fp32 and a
few candidates are timed within the budget even on a busy machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
POINT_S = 0.3

SCRIPT = """
import json, sys
from hasten.api import optimize_training
recipe, out, steps, batch_size, budget_s, point_s = sys.argv[1:]
study = optimize_training(recipe, quick=True, steps=int(steps), batch_size=int(batch_size),
                          out=out, budget_s=float(budget_s), point_s=float(point_s),
                          report=False)
print(json.dumps(study.to_dict()))
"""


def quick_study(recipe: Path, out: Path, *, steps: int = 4, batch_size: int = 16,
                budget_s: float = 45, env: dict[str, str] | None = None,
                calls: int = 3) -> dict:
    """The study of a quick `hasten train` run of the recipe, as its JSON; run again (up to
    `calls` in all) while no candidate but fp32 has been timed."""
    command = [sys.executable, "-c", SCRIPT, str(recipe), str(out), str(steps), str(batch_size),
               str(budget_s), str(POINT_S)]
    for _ in range(calls):
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600,
                              env={**os.environ, **(env or {})})
        assert proc.returncode == 0, proc.stderr[-4000:]
        study = json.loads(proc.stdout.splitlines()[-1])
        if _timed(study):
            break
    return study


def _timed(study: dict) -> list[str]:
    """The candidates besides fp32 that were timed."""
    return [row["candidate"] for row in study["candidates"]
            if row["candidate"] != study["baseline"] and row.get("speed")]


def assert_measured(study: dict, steps: int, metric: str) -> dict[str, dict]:
    """The study finished; fp32 was timed, trained for `steps` and evaluated (`metric`); at
    least one other candidate was timed; none failed. Returns the rows by candidate."""
    assert study["finished"] and study["kind"] == "train"
    rows = {row["candidate"]: row for row in study["candidates"]}
    baseline = rows[study["baseline"]]
    assert baseline["status"] == "ok"
    assert baseline["speed"]["p50"] > 0 and baseline["samples_per_s"] > 0
    assert baseline["converge"]["steps"] == steps
    assert metric in baseline["converge"]["eval"]
    assert _timed(study), {name: row.get("reason") for name, row in rows.items()}
    failed = {name: row["reason"] for name, row in rows.items() if row["status"] == "failed"}
    assert not failed
    return rows

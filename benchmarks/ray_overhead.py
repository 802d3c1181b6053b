"""Benchmark: what running trials through Ray costs. The --quick demo study runs twice, fresh
each time and without its time budget: with the local executor, then with the Ray executor on
a single-node cluster started on this machine beforehand (timed apart), every trial holding
this machine's CPUs and its rows and files travelling through the object store as between
machines. The difference in wall time over the number of trial runs is Ray's cost per trial:
the task, the store's snapshot, the files and rows sent there and back.

Run by hand on a quiet machine: `python benchmarks/ray_overhead.py` (needs `hasten[ray]`).
It prints a Markdown summary to paste into benchmarks/README.md.
"""

from __future__ import annotations

import importlib.metadata
import math
import time
from pathlib import Path

import hasten
from hasten import ray_executor
from hasten.store import read_study

HERE = Path(__file__).parent


def timed(**options) -> tuple[float, object]:
    started = time.perf_counter()
    # No time budget: under one, both runs would fill it and their wall times say nothing.
    study = hasten.optimize_inference("demo", out=HERE / "runs", fresh=True, quick=True,
                                      budget_s=math.inf, report=False, **options)
    return time.perf_counter() - started, study


def main() -> None:
    local_s, local = timed(name="ray-overhead-local")
    started = time.perf_counter()
    ray_executor.connect(None)
    start_s = time.perf_counter() - started
    ray_s, on_ray = timed(name="ray-overhead-ray", executor="ray")
    runs = read_study(on_ray.folder)["meta"]["ray_runs"]
    m = local.machine
    print(f"Machine: {m['cpu']}, {m['cores']} cores; ray {importlib.metadata.version('ray')}; "
          f"starting the single-node cluster took {start_s:.0f} s (not counted below)")
    print()
    print("| --quick demo study | wall s | trial runs | candidates ok |")
    print("|---|---|---|---|")
    for label, seconds, study in (("local executor", local_s, local),
                                  ("Ray, single-node cluster", ray_s, on_ray)):
        ok = sum(r["status"] == "ok" for r in study.table())
        print(f"| {label} | {seconds:.0f} | {len(runs)} | {ok} |")
    print(f"\nRay's cost per trial run: {(ray_s - local_s) / len(runs):.2f} s")


if __name__ == "__main__":
    main()

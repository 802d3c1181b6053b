"""Benchmark: the default demo study, with its targets measured in one run.

1. The recommended candidate at batch 8 (sequence length 128) against eager fp32 (confirmed
   in alternating rounds where the study confirmed that point): target at least 5x faster,
   with pooled-embedding cosine at least 0.99.
2. The dataset pass sorted by length against unsorted at batch 64: target at least 1.3x; and
   the corpus job's recommendation against the naive job.
3. The study's wall time within its budget (8 minutes; 2 with --quick).

Run by hand on a quiet machine: `python benchmarks/demo_study.py [--quick] [--json FILE]`.
It prints a Markdown summary to paste into benchmarks/README.md and writes the whole study as
JSON (default demo_study.json beside this file).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import hasten

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=HERE / "demo_study.json")
    args = parser.parse_args()
    started = time.perf_counter()
    study = hasten.optimize_inference("demo", out=HERE / "runs", fresh=True, quick=args.quick)
    wall = time.perf_counter() - started
    limit = 120 if args.quick else 480
    rows = {r["candidate"]: r for r in study.table()}
    base = rows[study.baseline]
    point = study.point(8, 128)
    best = study.best("latency", batch_size=8)
    confirmed = study.confirmed(point).get(best["candidate"])
    speedup = (confirmed["speedup"] if confirmed
               else base["points"][point]["p50"] / best["points"][point]["p50"])
    m = study.machine
    print(f"Machine: {m['cpu']}, {m['cores']} cores, flags: "
          f"{', '.join(k for k, v in m['flags'].items() if v)}; torch "
          f"{m['libraries']['torch']}, onnxruntime {m['libraries']['onnxruntime']}, "
          f"openvino {m['libraries']['openvino']}")
    print(f"Study wall time: {wall:.0f} s")
    print()
    print(f"| at {point} | p50 ms | p90 ms | samples | pooled cosine | NN agreement |")
    print("|---|---|---|---|---|---|")
    for row in (base, best):
        p, f = row["points"][point], row["fidelity"]
        print(f"| {row['candidate']} | {p['p50']:.1f} | {p['p90']:.1f} | {p['count']} | "
              f"{f['cosine_mean']:.4f} | {f['nn_agreement']:.1%} |")
    how = "confirmed in alternating rounds" if confirmed else "measured alone"
    print(f"\nRecommended candidate at batch 8: {best['candidate']}, {speedup:.2f}x eager fp32 "
          f"({how}; target >= 5x) -> {'MET' if speedup >= 5 else 'MISSED'}")
    print()
    print("| dataset pass at b64 | unsorted items/s | sorted items/s | gain |")
    print("|---|---|---|---|")
    for row in study.table():
        d = {p.split("/")[1]: v for p, v in row["points"].items() if p.startswith("dataset/")}
        if "sorted" in d and "unsorted" in d:
            gain = d["sorted"]["throughput"] / d["unsorted"]["throughput"]
            print(f"| {row['candidate']} | {d['unsorted']['throughput']:.0f} | "
                  f"{d['sorted']['throughput']:.0f} | {gain:.2f}x "
                  f"({'MET' if gain >= 1.3 else 'MISSED'} >= 1.3x) |")
    corpus = study.best("corpus")
    if corpus:
        job = study.corpus_job(corpus)
        print(f"\nCorpus job: {corpus['candidate']}, {job['items_per_s']:.0f} items/s at batch "
              f"{job['batch_size']} sorted by length, {job['gain']:.2f}x the naive job "
              f"({job['naive_items_per_s']:.0f} items/s: eager fp32 unsorted at batch "
              f"{study.settings.workload.dataset_batch_size})")
    print(f"\nStudy wall time {wall:.0f} s against the time budget of "
          f"{study.budget['seconds']:.0f} s (target <= {limit} s) -> "
          f"{'MET' if wall <= limit else 'MISSED'}")
    cut = study.budget.get("cut", {})
    if cut:
        print("Left out by the time budget: " + "; ".join(f"{n} ({r.split(':')[0]})"
                                                         for n, r in cut.items()))
    print()
    print("| confirmed in alternating rounds | point | alone | confirmed (range) |")
    print("|---|---|---|---|")
    for point, outcome in study.confirmation.get("results", {}).items():
        for name, c in outcome.get("candidates", {}).items():
            alone = rows[name]["speedup"].get(point)
            print(f"| {name} | {point} | {f'{alone:.2f}x' if alone else '-'} | "
                  f"{c['speedup']:.2f}x ({c['speedup_low']:.2f}-{c['speedup_high']:.2f}) |")
    print()
    for row in study.table():
        share = [n for n in row.get("notes") or [] if n.startswith(("int8 in", "kept in"))]
        if share:
            print(f"- {row['candidate']}: {'; '.join(share)}")
    args.json.write_text(json.dumps(study.to_dict(), indent=2))


if __name__ == "__main__":
    main()

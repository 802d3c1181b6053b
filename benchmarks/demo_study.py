"""Benchmark: the default demo study, with its two targets measured in one run.

1. The recommended latency candidate at batch 8 (sequence length 128) against eager fp32:
   target at least 3x faster, with pooled-embedding cosine at least 0.99.
2. The dataset pass sorted by length against unsorted at batch 64: target at least 1.3x the
   throughput.

Run by hand on a quiet machine: `python benchmarks/demo_study.py`. It prints a Markdown
summary to paste into benchmarks/README.md and writes the whole study as JSON beside it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import hasten

HERE = Path(__file__).parent


def main() -> None:
    started = time.perf_counter()
    study = hasten.optimize_inference("demo", out=HERE / "runs", fresh=True)
    wall = time.perf_counter() - started
    rows = {r["candidate"]: r for r in study.table()}
    base = rows[study.baseline]
    point = study.point(8, 128)
    best = study.best("latency", batch_size=8)
    speedup = base["points"][point]["p50"] / best["points"][point]["p50"]
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
    print(f"\nRecommended latency candidate at batch 8: {best['candidate']}, "
          f"{speedup:.2f}x eager fp32 (target >= 3x) -> {'MET' if speedup >= 3 else 'MISSED'}")
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
    print(f"\nStudy wall time {wall:.0f} s against the time budget of "
          f"{study.budget['seconds']:.0f} s (target <= 480 s) -> "
          f"{'MET' if wall <= 480 else 'MISSED'}")
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
            print(f"| {name} | {point} | {alone:.2f}x | {c['speedup']:.2f}x "
                  f"({c['speedup_low']:.2f}-{c['speedup_high']:.2f}) |")
    (HERE / "demo_study.json").write_text(json.dumps(study.to_dict(), indent=2))


if __name__ == "__main__":
    main()

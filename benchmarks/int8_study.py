"""Benchmark: int8 that keeps accuracy, on the digits CNN and on the demo encoder.

Trains the digits CNN (examples/digits/train.py), then runs the default study on its held-out
images with their labels, and the default demo study; each in one run, so every number below
is measured against the eager fp32 baseline of its own study. For each model it reports eager
fp32, the fastest passing float candidate and the fastest int8 candidate at batch 8: latency,
accuracy or fidelity, and the layers kept in float.

Targets: on the demo encoder at batch 8 the recommended candidate is at least 3.5x eager fp32
within tolerance; on the digits CNN the best int8 candidate is within 1 point of fp32's
accuracy on held-out data. Run by hand on a quiet machine: `python benchmarks/int8_study.py`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import hasten
from hasten.infer import passes

HERE = Path(__file__).parent
DIGITS = HERE.parent / "examples" / "digits"


def _kept(row: dict) -> str:
    found = [n for n in row.get("notes") or [] if n.startswith("kept in float")]
    return re.sub(r"; validation cosine.*", "", found[0]) if found else "none"


def _summary(study, point: str, metric: str) -> dict:
    rows = study.table()
    base = next(r for r in rows if r["candidate"] == study.baseline)
    measured = [r for r in rows if point in r["points"] and r["candidate"] != study.baseline]
    passing = [r for r in measured if r["status"] == "ok"]
    chains = {c["name"]: c["passes"] for c in study.candidates}

    def is_int8(row: dict) -> bool:
        return passes.computes(chains[row["candidate"]], "int8")

    best_float = min((r for r in passing if not is_int8(r)),
                     key=lambda r: r["points"][point]["p50"], default=None)
    int8 = [r for r in measured if is_int8(r)]
    best_int8 = min(int8, key=lambda r: (r["status"] != "ok", r["points"][point]["p50"]),
                    default=None)
    print(f"| {study.settings.model['name']} at {point} | p50 ms | speedup | {metric} | status "
          "| kept in float |")
    print("|---|---|---|---|---|---|")
    for label, row in (("eager fp32", base), ("best float", best_float),
                       ("best int8", best_int8)):
        if row is None:
            print(f"| {label}: none | | | | | |")
            continue
        p50 = row["points"][point]["p50"]
        value = row["fidelity"].get(metric)
        print(f"| {label}: {row['candidate']} | {p50:.2f} | "
              f"{base['points'][point]['p50'] / p50:.2f}x | {value:.4f} | {row['status']} | "
              f"{_kept(row)} |")
    best = study.best("latency", batch_size=8)
    speedup = base["points"][point]["p50"] / best["points"][point]["p50"]
    print(f"\nRecommended at batch 8: {best['candidate']}, {speedup:.2f}x eager fp32.\n")
    return {"baseline": base, "best_float": best_float, "best_int8": best_int8,
            "recommended": best["candidate"], "speedup": speedup}


def main() -> None:
    runs = HERE / "runs"
    sys.path.insert(0, str(DIGITS))
    import train

    trained = train.main(runs / "digits")
    os.environ["DIGITS_WEIGHTS"] = str((runs / "digits" / "weights.pt").resolve())
    results = {"digits_trained_accuracy": trained}
    for name, spec, data, metric in (
        ("digits-int8", f"py:{DIGITS / 'model.py'}:build", runs / "digits" / "heldout",
         "accuracy"),
        ("demo-int8", "demo", None, "cosine_mean"),
    ):
        started = time.perf_counter()
        study = hasten.optimize_inference(spec, data=data, out=runs, name=name, fresh=True)
        print(f"{name}: study wall time {time.perf_counter() - started:.0f} s, "
              f"{study.busy_points()} busy points")
        point = study.point(8)
        results[name] = _summary(study, point, metric)
        if name == "digits-int8":
            base = results[name]["baseline"]["fidelity"]["accuracy"]
            best = results[name]["best_int8"]
            drop = (base - best["fidelity"]["accuracy"]) * 100 if best else float("inf")
            print(f"Digits: best int8 accuracy {drop:.2f} points below fp32's {base:.4f} "
                  f"(target within 1 point) -> {'MET' if drop <= 1 else 'MISSED'}")
        else:
            print(f"Demo: {results[name]['speedup']:.2f}x at batch 8 (target >= 3.5x) -> "
                  f"{'MET' if results[name]['speedup'] >= 3.5 else 'MISSED'}")
    m = study.machine
    print(f"\nMachine: {m['cpu']}, {m['cores']} cores, flags: "
          f"{', '.join(k for k, v in m['flags'].items() if v)}")
    (HERE / "int8_study.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()

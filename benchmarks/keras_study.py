"""The bundled Keras demo study (keras-digits) on one backend, with the wall time of each
trial process: what benchmarks/README.md records for Keras.

    python benchmarks/keras_study.py tensorflow
    python benchmarks/keras_study.py torch
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import hasten
from hasten.train.run import DEMOS


def main(backend: str) -> None:
    path, settings = DEMOS["keras-digits"]
    marks: list[tuple[str, float]] = []
    started = time.perf_counter()

    def log(line: str) -> None:
        marks.append((line, time.perf_counter()))
        print(f"{time.perf_counter() - started:7.1f} s  {line}", flush=True)

    out = Path("hasten-runs")
    study = hasten.optimize_training(path, out=out, name=f"keras-digits-{backend}",
                                     keras_backend=backend, fresh=True, log=log, **settings)
    seconds = {}
    last = started
    for line, at in marks:
        seconds.setdefault(line.split()[0], []).append(round(at - last, 1))
        last = at
    rows = [{"candidate": r["candidate"], "status": r["status"],
             "samples_per_s": r["samples_per_s"], "step_ms": (r["speed"] or {}).get("p50"),
             "train_mb": r["peak_mb"],
             "accuracy": ((r["converge"] or {}).get("eval") or {}).get("accuracy"),
             "skipped_steps": (r["converge"] or {}).get("skipped_steps"),
             "trial_s": seconds.get(r["candidate"]), "reason": r["reason"]}
            for r in study.table()]
    result = {"backend": backend, "total_s": round(time.perf_counter() - started, 1),
              "machine": study.machine, "rows": rows,
              "recommendations": study.to_dict()["recommendations"]}
    Path(f"benchmarks/keras_study-{backend}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tensorflow")

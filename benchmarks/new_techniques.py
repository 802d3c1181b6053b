"""Benchmark: the two techniques the engine's homes were proven with, each on the real demo
model against its baseline measured in the same study.

1. Training: batches grouped by length (`32-true/length-grouped`) against random batches
   (`32-true`) on the MiniLM topic classifier (`demo-text`'s recipe, batch 16, 60 steps):
   samples per second and held-out accuracy, each trained to the end.
2. Inference: the attention implementation of the MiniLM encoder: the `eager` one against the
   `sdpa` it loads with (the baseline `torch/eager/fp32`), at every point of a --quick study.

Each study holds only those candidates. Run by hand on a quiet machine:
`python benchmarks/new_techniques.py`; it prints Markdown to paste into benchmarks/README.md.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from unittest import mock

import hasten
from hasten.infer import menu
from hasten.infer.candidates import Candidate
from hasten.machine import describe
from hasten.train import candidates
from hasten.train import run as train_run
from hasten.train.demos import DEMOS


def training(out: Path) -> None:
    chosen = [(c, q) for c, q in candidates.menu()
              if c.name in ("32-true", "32-true/length-grouped")]
    started = time.monotonic()
    with mock.patch.object(train_run, "menu", lambda: chosen), \
            mock.patch.object(train_run, "CONVERGE", 0):
        study = hasten.optimize_training(DEMOS["text"], steps=60, batch_size=16, audit=False,
                                         out=out, name="text", report=False)
    print(f"\n### Batches grouped by length: demo-text, batch 16, 60 steps "
          f"({time.monotonic() - started:.0f} s)\n")
    print("| candidate | step p50 ms | samples/s | x 32-true | accuracy | status |")
    print("|---|---|---|---|---|---|")
    for row in study.table():
        accuracy = ((row["converge"] or {}).get("eval") or {}).get("accuracy")
        print(f"| {row['candidate']} | {row['speed']['p50']:.0f} | "
              f"{row['samples_per_s']:.1f} | {row['speedup']:.2f} | "
              f"{accuracy:.4f} | {row['status']} |")
    lengths = study.settings.model["lengths"]
    print(f"\nPadded to {lengths['padded_to']} tokens; the mean training sample holds "
          f"{lengths['mean']:.1f}.")


def inference(out: Path) -> None:
    keep = {menu.BASELINE, "torch/eager/attention-eager"}
    chosen = tuple(c if c.name != "torch/eager/attention-eager" else
                   Candidate(c.name, c.passes, c.runtime, c.settings, True)
                   for c in menu.CANDIDATES if c.name in keep)
    started = time.monotonic()
    with mock.patch.object(menu, "CANDIDATES", chosen):
        study = hasten.optimize_inference("demo", quick=True, out=out, name="attention",
                                          report=False)
    print(f"\n### Attention implementation: the demo encoder, --quick points "
          f"({time.monotonic() - started:.0f} s)\n")
    rows = {r["candidate"]: r for r in study.table()}
    base, eager = rows[menu.BASELINE], rows["torch/eager/attention-eager"]
    print("| point | sdpa (baseline) p50 ms | eager p50 ms | eager / sdpa |")
    print("|---|---|---|---|")
    for point, figures in base["points"].items():
        other = eager["points"].get(point)
        if other:
            print(f"| {point} | {figures['p50']:.1f} | {other['p50']:.1f} | "
                  f"{other['p50'] / figures['p50']:.2f} |")
    print(f"\neager's pooled cosine against the baseline: "
          f"{eager['fidelity'].get('cosine_mean', float('nan')):.5f}")


def main() -> None:
    print(f"Machine: {describe()['cpu']}, {describe()['cores']} usable cores")
    with tempfile.TemporaryDirectory() as tmp:
        training(Path(tmp))
        inference(Path(tmp))


if __name__ == "__main__":
    main()

"""Benchmark: `hasten numerics audit` of the bundled encoder on the demo corpus.

Target: finishes in under a minute on 2 cores (the whole command: model load, 256 samples
through the hooked fp32 forward, and the four confirmation runs). Run by hand on a quiet
machine: `python benchmarks/numerics_audit.py`; it prints a Markdown summary for
benchmarks/README.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from hasten import machine

HASTEN = str(Path(sys.executable).with_name("hasten"))


def main() -> None:
    started = time.perf_counter()
    proc = subprocess.run([HASTEN, "numerics", "audit", "--json"], capture_output=True,
                          text=True, check=True)
    wall = time.perf_counter() - started
    result = json.loads(proc.stdout)
    m = machine.describe()
    print(f"Machine: {m['cpu']}, {m['cores']} cores; torch {m['libraries']['torch']}")
    print(f"Command wall time: {wall:.1f} s (audit itself {result['seconds']:.1f} s) for "
          f"{result['samples']} samples in {result['batches']} batches, "
          f"{len(result['modules'])} modules -> {'MET' if wall < 60 else 'MISSED'} (< 60 s)")
    print()
    print("| precision | max abs diff | cosine (mean) | rel error | passes |")
    print("|---|---|---|---|---|")
    for r in result["confirm"]:
        print(f"| {r['precision']} | {r['max_abs_diff']:.4g} | {r['cosine_mean']:.6f} | "
              f"{r['rel_error']:.3g} | {'yes' if r['passed'] else 'no'} |")
    verdict = result["verdict"]
    print(f"\nVerdict: {verdict['choice']}. " + " ".join(verdict["reasons"]))
    out = result["output"]
    print(f"Outputs: largest {out['max_abs']:.4g}, fp16 to zero {out['float16_zero_share']:.2%}, "
          f"fp16 subnormal {out['float16_subnormal_share']:.2%}; LayerNorm inputs up to "
          f"{max(k['value'] for k in verdict['keep_fp32']):.4g}.")


if __name__ == "__main__":
    main()

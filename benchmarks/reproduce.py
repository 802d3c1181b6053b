"""Re-measure an exported candidate outside hasten and check the study's confirmed speedup.

    .venv/bin/python benchmarks/reproduce.py fast/ [--point b8/s128] [--rounds 9] [--rest 0.3]
    .venv/bin/python benchmarks/reproduce.py fast/ --point corpus

The exported folder is loaded by its own load.py (runpy, as a user would run it) in a fresh
process; eager fp32 PyTorch of the same model runs in a second fresh process. The two forms
take turns, one timed block each per round, with `--rest` seconds of rest before every block
and the order swapped each round, on texts hasten's demo corpus holds beyond the study's
first thousand (so the study never saw them). The speedup is the median of the per-round
ratios; it must agree with the study's confirmed figure (candidate.json's `confirmed`) within
10%. Prints one JSON object; exit code 1 when it does not agree.

With `--point corpus` (a text model), each block is one corpus job over 1,816 sentences the study
never saw: load.py's embed_corpus() against the study's naive job (eager fp32, unsorted, batches
of the study's corpus batch size padded to their longest text), checked against the gain the
study measured for the export's corpus job.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import runpy
import statistics
import subprocess
import sys
import time
from pathlib import Path

AGREE = 0.10  # the bar: the figure outside hasten within 10% of the study's
CORPUS = 1816  # sentences in a corpus block, from the demo corpus beyond the study's first 1,000
BLOCK_S = 0.5  # each form is timed for about this long per round


def _inputs(recipe: dict, folder: Path, point: str, as_torch: bool) -> list:
    """The point's batch: fresh texts through the exported tokenizer, padded to the point's
    sequence length, or random tensors of the model's example shape."""
    import numpy as np

    batch = int(point.split("/")[0][1:])
    if recipe["task"] in (None, "feature-extraction") and (folder / "tokenizer").is_dir():
        from transformers import AutoTokenizer

        from hasten.data import demo_corpus

        seq = int(point.split("/")[1][1:])
        texts = demo_corpus(1000 + batch)[1000:1000 + batch]
        tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
        encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=seq,
                            return_tensors="pt" if as_torch else "np")
        return [encoded[name] for name in recipe["input_names"]]
    shape = recipe["input_shape"] or [1, 8, 8]
    array = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
    if as_torch:
        import torch

        return [torch.from_numpy(array)]
    return [array]


def worker(form: str, folder: Path, point: str) -> None:
    """One form in this process: answer each line N on stdin with the median of N calls (s)."""
    recipe = json.loads((folder / "candidate.json").read_text())
    if form == "artifact":
        with contextlib.redirect_stdout(sys.stderr):  # what load.py prints is not a reply
            loaded = runpy.run_path(str(folder / "load.py"))
        run = loaded["run"]
        as_torch = type(loaded["inputs"][0]).__module__.startswith("torch")
    else:
        import torch

        from hasten.models import load_model

        model = load_model(recipe["spec"], recipe["task"], recipe["input_shape"]).module.eval()
        torch.set_num_threads(os.cpu_count() or 1)

        def run(inputs: list):
            with torch.inference_mode():
                return model(*inputs)

        as_torch = True
    if point == "corpus":
        job = _corpus_job(recipe, folder, form, loaded["embed_corpus"] if form == "artifact"
                          else run)
    else:
        inputs = _inputs(recipe, folder, point, as_torch)

        def job():
            return run(inputs)

    for _ in range(1 if point == "corpus" else 3):
        job()
    print("ready", flush=True)
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            started = time.perf_counter()
            job()
            times.append(time.perf_counter() - started)
        print(statistics.median(times), flush=True)


def _corpus_job(recipe: dict, folder: Path, form: str, run):
    """The corpus block: the export's embed_corpus over fresh sentences, or the study's naive
    job (unsorted, batches padded to their longest text) for eager fp32."""
    from transformers import AutoTokenizer

    from hasten.data import demo_corpus

    texts = demo_corpus(1000 + CORPUS)[1000:1000 + CORPUS]
    if form == "artifact":
        return lambda: run(texts)
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    size = recipe["corpus"]["naive_batch_size"]
    batches = []
    for start in range(0, len(texts), size):
        encoded = tokenizer(texts[start:start + size], padding=True, truncation=True,
                            max_length=recipe["corpus"]["max_length"], return_tensors="pt")
        batches.append([encoded[name] for name in recipe["input_names"]])
    return lambda: [run(b) for b in batches]


def measure(folder: Path, point: str, rounds: int, rest: float) -> dict:
    """Both forms in alternating rounds; per-form medians and the per-round speedups."""
    procs = {form: subprocess.Popen([sys.executable, __file__, str(folder), "--point", point,
                                     "--worker", form], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True)
             for form in ("eager", "artifact")}
    try:
        for form, proc in procs.items():
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit(f"the {form} process did not start")

        def block(form: str, calls: int) -> float:
            time.sleep(rest)
            procs[form].stdin.write(f"{calls}\n")
            procs[form].stdin.flush()
            return float(procs[form].stdout.readline())

        calls = {form: max(3, round(BLOCK_S / block(form, 3))) for form in procs}
        per_round: dict[str, list[float]] = {form: [] for form in procs}
        for r in range(rounds):
            order = list(procs) if r % 2 == 0 else list(procs)[::-1]
            for form in order:
                per_round[form].append(block(form, calls[form]))
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
    ratios = sorted(e / a for e, a in zip(per_round["eager"], per_round["artifact"],
                                          strict=True))
    return {form: {"p50_ms": statistics.median(t) * 1000, "min_ms": min(t) * 1000,
                   "max_ms": max(t) * 1000} for form, t in per_round.items()} | {
        "speedup": statistics.median(ratios), "speedup_low": ratios[0],
        "speedup_high": ratios[-1], "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--point", default=None,
                        help="b8/s128 for text, b8 for tensors, corpus for the corpus job")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--rest", type=float, default=0.3)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    recipe = json.loads((args.folder / "candidate.json").read_text())
    text = (args.folder / "tokenizer").is_dir()
    point = args.point or ("b8/s128" if text else "b8")
    if args.worker:
        worker(args.worker, args.folder, point)
        return
    measured = measure(args.folder, point, args.rounds, args.rest)
    claimed = (recipe["corpus"].get("gain") if point == "corpus"
               else recipe.get("confirmed", {}).get(point, {}).get("speedup"))
    agrees = claimed is not None and abs(measured["speedup"] / claimed - 1) <= AGREE
    from hasten.machine import describe

    print(json.dumps({"candidate": recipe["candidate"], "point": point, "outside": measured,
                      "confirmed_in_study": claimed, "agrees_within_10pct": agrees,
                      "machine": describe()}, indent=2))
    sys.exit(0 if agrees else 1)


if __name__ == "__main__":
    main()

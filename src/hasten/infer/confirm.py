"""Interleaved confirmation, run in a child process: the baseline and the leaders of each
objective's point are timed again in one process, in alternating rounds, so that the drift of a
shared machine hits them all alike and cannot fake a win. The final ranking uses these figures.

Run as `python -m hasten.infer.confirm STUDY_DIR confirm confirm POINTS`; the candidates of each
point are the study's meta `confirmation.plan`.
"""

from __future__ import annotations

import importlib
import os
import statistics
import sys
import threading
import time
import traceback
from pathlib import Path

from hasten.errors import describe_error
from hasten.infer import runtimes
from hasten.infer.settings import InferSettings
from hasten.infer.trial import build
from hasten.infer.workload import point_inputs
from hasten.measure import Clock
from hasten.store import Store

ROUNDS = 5
# Each form is timed for about this long per round (never fewer than MIN_CALLS calls).
BLOCK_S = 0.1
MIN_CALLS = 3
# Worker threads of ONNX Runtime, OpenVINO (TBB) and OpenMP spin for a while after a call and
# slow whatever runs next: on a 2-core AMX Xeon a fixed 50-ms pause left eager fp32 at 96 ms in
# the confirmation against 79.5 ms alone, inflating the confirmed speedup by a quarter. Each
# form now starts once the process's other threads have been idle for IDLE_WINDOW_S (using
# under IDLE_CPU_S of CPU in it), after at least PAUSE_S and at most SETTLE_MAX_S.
PAUSE_S = 0.05
IDLE_WINDOW_S = 0.05
IDLE_CPU_S = 0.01  # one clock tick of the kernel's accounting (10 ms)
SETTLE_MAX_S = 3.0
# A form's confirmed time and its own trial's time (each measured alone in its process) agree
# when they differ by no more than this, or the trial's own spread if larger: absolute times
# drift on a shared machine, so this is a check that the confirmation slowed no form.
AGREE_TOL = 0.15


def other_threads_cpu_s() -> float:
    """CPU seconds this process's threads other than the calling one have used so far."""
    me = threading.get_native_id()
    ticks = 0
    for task in os.listdir("/proc/self/task"):
        if int(task) == me:
            continue
        try:
            fields = Path(f"/proc/self/task/{task}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime and stime
    return ticks / os.sysconf("SC_CLK_TCK")


def settle(pause_s: float = PAUSE_S) -> float:
    """Wait until the other threads (runtimes' spinning workers) are idle; return the wait."""
    started = time.perf_counter()
    time.sleep(pause_s)
    while time.perf_counter() - started < SETTLE_MAX_S:
        before = other_threads_cpu_s()
        time.sleep(IDLE_WINDOW_S)
        if other_threads_cpu_s() - before < IDLE_CPU_S:
            break
    return time.perf_counter() - started


def confirm(names: list[str], runners: dict, inputs: dict, clock: Clock, rounds: int = ROUNDS,
            pause_s: float = PAUSE_S) -> dict[str, list[float]]:
    """Each form's median call time (s) per round, each block started on a quiet process
    (see settle); the order rotates from round to round."""
    calls = {}
    for name in names:
        runners[name](inputs[name])  # warm after the other forms ran
        first = clock.time(lambda n=name: runners[n](inputs[n]))
        calls[name] = max(MIN_CALLS, round(BLOCK_S / max(first, 1e-6)))
    per_round: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            settle(pause_s)
            samples = [clock.time(lambda n=name: runners[n](inputs[n]))
                       for _ in range(calls[name])]
            per_round[name].append(statistics.median(samples))
    return per_round


def check_alone(summary: dict[str, dict], alone: dict[str, dict]) -> None:
    """Add to each form its own trial's median (`alone_p50`, ms) and whether the confirmed
    time agrees with it (`agrees`; see AGREE_TOL), so that a confirmation that slowed a form
    says so next to its figure."""
    for name, c in summary.items():
        latency = alone.get(name)
        if not latency:
            continue
        spread = (latency.get("p90", latency["p50"]) - latency["p50"]) / latency["p50"]
        c["alone_p50"] = latency["p50"]
        c["agrees"] = abs(c["p50"] / latency["p50"] - 1) <= max(AGREE_TOL, spread)


def summarize(per_round: dict[str, list[float]], baseline: str) -> dict[str, dict]:
    """Per form: its median latency (ms), and its speedup over the baseline taken round by round
    (median, lowest and highest), so that a round slowed for all alike cancels out."""
    out = {}
    for name, times in per_round.items():
        ratios = [b / t for b, t in zip(per_round[baseline], times, strict=True)]
        out[name] = {"p50": statistics.median(times) * 1000, "speedup": statistics.median(ratios),
                     "speedup_low": min(ratios), "speedup_high": max(ratios),
                     "rounds": len(times)}
    return out


def run(study: Path, points: list[str]) -> None:
    store = Store(study)
    settings = InferSettings.from_dict(store.meta("config"))
    plan = store.meta("confirmation")["plan"]
    rows = {c["name"]: c for c in store.candidates()}
    wanted = sorted({n for p in points for n in plan[p]})
    # The runtimes' libraries first, as a trial loads them.
    for runtime in {rows[n]["runtime"] for n in wanted}:
        if runtimes.REGISTRY[runtime].library:
            importlib.import_module(runtimes.REGISTRY[runtime].library)
    if settings.hugging_face():
        importlib.import_module("transformers")
    runners, model, workload = {}, None, None
    for name in wanted:
        model, workload, artifact = build(study, settings, tuple(rows[name]["passes"]), {})
        if artifact.module is not model.module:
            model.module = None  # the source model: not what the candidate holds
        runners[name] = runtimes.REGISTRY[rows[name]["runtime"]].build(
            artifact, rows[name]["settings"], settings.threads, settings.device)
    clock = Clock(cuda=settings.device == "cuda")
    results = {}
    for point in points:
        names = plan[point]
        try:
            batch = point_inputs(model, workload, point)[0]
            measured = confirm(names, runners, dict.fromkeys(names, batch), clock)
            summary = summarize(measured, settings.baseline)
            check_alone(summary, {t["candidate"]: t["latency"] for t in store.trials()
                                  if t["point"] == point and t["status"] == "ok"})
            results[point] = {"candidates": summary}
        except Exception as exc:
            results[point] = {"error": describe_error(exc)}
            traceback.print_exc()
    done = store.meta("confirmation")
    store.set_meta("confirmation", {**done, "results": {**done.get("results", {}), **results}})


def main() -> None:
    study, _, _, points = sys.argv[1:5]
    run(Path(study), [p for p in points.split(",") if p])


if __name__ == "__main__":
    main()

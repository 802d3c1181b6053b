"""Interleaved confirmation, the part every study shares: forms (a candidate built as its
trial builds it) each in a worker process of its own, timed in alternating rounds, so that the
drift of a shared machine hits them all alike and cannot fake a win. In one process the
runtimes' thread pools slowed the others (eager fp32 of a small CNN took 48 ms a call beside
ONNX Runtime's spinning workers on a 2-core Xeon, against 0.3 ms alone, and the study
confirmed a 1,090x speedup). Each study's confirm module holds its own run and worker
(hasten.infer.confirm, hasten.generate.confirm)."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from hasten.errors import describe_error
from hasten.forkserver import parent_bound
from hasten.store import Meta, Store

ROUNDS = 5
# Each form is timed for about this long per round (never fewer than MIN_CALLS calls).
BLOCK_S = 0.1
MIN_CALLS = 3
# Worker threads of ONNX Runtime, OpenVINO (TBB) and OpenMP spin for a while after a call and
# slow whatever runs next, in any process: on a 2-core AMX Xeon a fixed 50-ms pause left eager
# fp32 at 96 ms in the confirmation against 79.5 ms alone, inflating the confirmed speedup by
# a quarter. Each form starts once the other forms' processes have been idle for
# IDLE_WINDOW_S (using under IDLE_CPU_S of CPU in it), after at least PAUSE_S and at most
# SETTLE_MAX_S.
PAUSE_S = 0.05
IDLE_WINDOW_S = 0.05
IDLE_CPU_S = 0.01  # one clock tick of the kernel's accounting (10 ms)
SETTLE_MAX_S = 3.0
# A form's confirmed time and its own trial's time (each measured alone in its process) agree
# when they differ by no more than this, or the trial's own spread if larger: absolute times
# drift on a shared machine, so this is a check that the confirmation slowed no form.
AGREE_TOL = 0.15


def other_processes_cpu_s(pids: list[int]) -> float:
    """CPU seconds the given processes (the other forms' workers) have used so far."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime and stime
    return ticks / os.sysconf("SC_CLK_TCK")


def settle(others: list[int], pause_s: float = PAUSE_S) -> float:
    """Wait until the other forms' processes (their runtimes' spinning workers) are idle;
    return the wait."""
    started = time.perf_counter()
    time.sleep(pause_s)
    while time.perf_counter() - started < SETTLE_MAX_S:
        before = other_processes_cpu_s(others)
        time.sleep(IDLE_WINDOW_S)
        if other_processes_cpu_s(others) - before < IDLE_CPU_S:
            break
    return time.perf_counter() - started


class Form:
    """One form's worker process (`module`'s phase `worker`): asked for N calls at a point, it
    answers with their median time in seconds."""

    def __init__(self, study: Path, name: str, points: list[str], module: str):
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, str(study), name, "worker",
             ",".join(points)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=parent_bound())

    def ready(self) -> None:
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"the confirmation process of {self.name} did not start "
                               f"({line or 'it exited'}; see the log)")

    def time(self, point: str, calls: int) -> float:
        self.proc.stdin.write(f"{point} {calls}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"the confirmation process of {self.name} ended at {point}")
        return float(line)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        self.proc.wait()


def confirm(names: list[str], forms: dict[str, Form], point: str, rounds: int = ROUNDS,
            pause_s: float = PAUSE_S, calls: int | None = None) -> dict[str, list[float]]:
    """Each form's median call time (s) per round at `point`, each block started once every
    other worker process (those of the forms of other points too) is idle (see settle); the
    order rotates from round to round. A block is `calls` calls, or by default as many as fill
    BLOCK_S (a worker whose answer is not a call's own duration gives `calls`)."""
    pids = {name: form.proc.pid for name, form in forms.items()}

    def block(name: str, calls: int) -> float:
        settle([p for n, p in pids.items() if n != name], pause_s)
        return forms[name].time(point, calls)

    count = ({name: calls for name in names} if calls else
             {name: max(MIN_CALLS, round(BLOCK_S / max(block(name, 1), 1e-6))) for name in names})
    per_round: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            per_round[name].append(block(name, count[name]))
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


def run(study: Path, points: list[str], baseline: str, module: str,
        calls: int | None = None) -> None:
    """Start one worker process per form (`module`'s phase `worker`), confirm each point's
    forms (the study's meta `confirmation.plan`) in alternating rounds of `calls` calls (see
    confirm), and write the results into that meta: per point the forms' figures, or the
    error that stopped them."""
    store = Store(study)
    plan = store.meta(Meta.CONFIRMATION)["plan"]
    wanted = sorted({n for p in points for n in plan[p]})
    forms = {name: Form(study, name, points, module) for name in wanted}
    results = {}
    try:
        failed = {}
        for name, form in forms.items():
            try:
                form.ready()
            except RuntimeError as exc:
                failed[name] = str(exc)
        for point in points:
            names = plan[point]
            broken = [failed[n] for n in names if n in failed]
            if broken:
                results[point] = {"error": broken[0]}
                continue
            try:
                summary = summarize(confirm(names, forms, point, calls=calls), baseline)
                check_alone(summary, {t["candidate"]: t["latency"] for t in
                                      store.trials(point=point, status="ok")})
                results[point] = {"candidates": summary}
            except Exception as exc:
                results[point] = {"error": describe_error(exc)}
                traceback.print_exc()
    finally:
        for form in forms.values():
            form.close()
    done = store.meta(Meta.CONFIRMATION)
    store.set_meta(Meta.CONFIRMATION, {**done, "results": {**done.get("results", {}), **results}})


def replies() -> TextIO:
    """A worker's channel to the confirmation process, the original stdout; from here on,
    whatever the libraries print goes to the log (stderr) instead of into the replies."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return reply


def serve(reply: TextIO, time_one: Callable[[str], float]) -> None:
    """Say the worker is ready, then answer each request `POINT N` with the median of N
    timings `time_one(POINT)` (s)."""
    reply.write("ready\n")
    for line in sys.stdin:
        point, calls = line.split()
        reply.write(f"{statistics.median(time_one(point) for _ in range(int(calls)))}\n")


def main(run: Callable[[Path, list[str]], None],
         worker: Callable[[Path, str, list[str]], None]) -> None:
    """A confirm module's entry point: `STUDY_DIR confirm confirm POINTS` runs the rounds,
    `STUDY_DIR CANDIDATE worker POINTS` one form's worker."""
    study, name, phase, points = sys.argv[1:5]
    chosen = [p for p in points.split(",") if p]
    if phase == "worker":
        worker(Path(study), name, chosen)
    else:
        run(Path(study), chosen)

"""Executors decide where a trial runs. The local executor starts one child process per
candidate and phase, with a time limit; crashes and kills become reasons, not exceptions."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hasten import machine
from hasten.forkserver import Child, ForkServer, kill_group, parent_bound
from hasten.store import Meta, Store

# Time limits follow the model: this many times what the baseline took for the same phase,
# never under the floor. Before the baseline has run, its own phase gets the first limit.
LIMIT_FACTOR = 30
LIMIT_FLOOR_S = 120.0
FIRST_LIMIT_S = 900.0


class TimeLimits:
    """Each phase's time limit: derived from the baseline's own cost, or the user's fixed one.

    The baseline's times are kept in the study's store, so a resumed study keeps its limits.
    """

    def __init__(self, store: Store, fixed_s: float | None = None):
        self.store = store
        self.fixed_s = fixed_s

    def of(self, phase: str) -> float:
        """The limit for one run of this phase."""
        if self.fixed_s is not None:
            return self.fixed_s
        took = self.store.meta(Meta.BASELINE_SECONDS, {}).get(phase)
        return FIRST_LIMIT_S if took is None else max(LIMIT_FLOOR_S, LIMIT_FACTOR * took)

    def record(self, phase: str, seconds: float) -> None:
        """Remember how long the baseline's run of this phase took."""
        took = self.store.meta(Meta.BASELINE_SECONDS, {})
        self.store.set_meta(Meta.BASELINE_SECONDS, {**took, phase: seconds})


# No one candidate's build or trial may take more than this share of what its phase has left:
# a model whose torch.export hung spent a whole two-minute --quick budget on the ONNX export,
# and every other candidate, even those that would have failed at once, stayed pending.
RUN_SHARE = 0.5


class Deadline:
    """A study's time budget: each phase may start a run while what it has spent plus the run's
    expected cost stays within its share of the budget, so the leaders are always measured and
    confirmed before the budget ends, and what did not fit is cut with a reason.

    The budget counts from this call: running the same command again goes on from there.
    """

    # The part of the budget by which each phase's runs must be expected to end: an inference
    # study's phases, unless the study names its own. The last 20% is the confirmation's,
    # which builds the leaders again (three of them, two compiled by torch.compile, took 65 s
    # of an 8-minute study on a 2-core Xeon).
    SHARES = {"screen": 0.6, "tune": 0.7, "objective": 0.75, "full": 0.8, "corpus": 0.8}

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic,
                 shares: dict[str, float] | None = None):
        self.seconds = seconds
        self.clock = clock
        self.shares = shares or self.SHARES
        self.started = clock()
        self.costs: dict[str, list[float]] = {}

    def spent(self) -> float:
        return self.clock() - self.started

    def allows(self, phase: str, scale: float = 1.0) -> bool:
        """Whether one more run of this phase is expected to end within its share: its cost is
        the median of the phase's runs so far (unknown before the first, which may start), each
        taken per unit of its `scale` and multiplied by this run's (a candidate's time per call
        against the baseline's: a leader three times as fast runs its corpus job in about a
        third of the baseline's time)."""
        costs = sorted(self.costs.get(phase, []))
        expected = costs[len(costs) // 2] * scale if costs else 0.0
        return self.spent() + expected <= self.shares[phase] * self.seconds

    def record(self, phase: str, seconds: float, scale: float = 1.0) -> None:
        self.costs.setdefault(phase, []).append(seconds / scale)

    def left(self, phase: str) -> float:
        """How long the runs of this phase may still take, together."""
        return self.shares[phase] * self.seconds - self.spent()

    def cap(self, phase: str) -> float:
        """How long one candidate's build or trial in this phase may take: RUN_SHARE of what
        the phase has left, so that one that hangs leaves room for the rest."""
        return RUN_SHARE * self.left(phase)

    def cut(self, what: str) -> str:
        """The reason a candidate or a measurement was left out."""
        return (f"{what}: the study's time budget of {describe_seconds(self.seconds)} was spent; "
                "run the same command again (or with a larger time budget) to go on")


def describe_seconds(seconds: float) -> str:
    """90 -> '90 s', 480 -> '8 min', 0.5 -> '0.5 s'."""
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.3g} s"


class Executor(Protocol):
    """Where a study's trials run: `run` starts one, `threads`, `machine` and `machine_type`
    say what they run on (stored with the study), `suffix` ends the study folder's name."""

    suffix: str

    def run(self, study: Path, candidate: str, phase: str, points: list[str],
            timeout_s: float, module: str = "hasten.infer.trial",
            watch: Callable[[], str | None] | None = None) -> str | None: ...

    def threads(self) -> int: ...

    def machine(self) -> dict: ...

    def machine_type(self) -> dict: ...


# Trial modules started by forking a server that has imported them and their libraries
# (hasten.forkserver), instead of a fresh interpreter: about 4 s less per trial. Keras trials
# start fresh, so that a TensorFlow trial never loads PyTorch beside it.
FORKED = ("hasten.infer.trial", "hasten.infer.confirm", "hasten.train.runner",
          "hasten.generate.trial")
PRELOAD = (*FORKED, "transformers.modeling_utils", "transformers.models.auto.modeling_auto",
           "transformers.models.auto.tokenization_auto")
_FORK_SERVER = ForkServer(PRELOAD)


class LocalExecutor:
    """Runs trials one at a time in their own processes on this machine: forked from a server
    that has imported PyTorch already (see FORKED), or fresh Python processes."""

    suffix = ""

    def threads(self) -> int:
        return machine.usable_cores()

    def machine(self) -> dict:
        return machine.describe()

    def machine_type(self) -> dict:
        return machine.machine_type(machine.describe())

    def run(self, study: Path, candidate: str, phase: str, points: list[str],
            timeout_s: float, module: str = "hasten.infer.trial",
            watch: Callable[[], str | None] | None = None) -> str | None:
        """Run one candidate's trials with `python -m module`; return why the process failed,
        or None. `watch`, asked every second, may stop it sooner with its reason. An
        interrupt (Ctrl-C) stops the trial process too before it goes on."""
        logs = study / "logs"
        logs.mkdir(exist_ok=True)
        log = logs / f"{candidate.replace('/', '_')}.{phase}.log"
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"}
        argv = [str(study), candidate, phase, ",".join(points)]
        with log.open("w") as out:
            if module in FORKED:
                proc = _FORK_SERVER.start(module, argv, log, env)
            else:
                proc = subprocess.Popen([sys.executable, "-m", module, *argv], stdout=out,
                                        stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True, preexec_fn=parent_bound())
            started = time.monotonic()
            try:
                while proc.poll() is None:
                    left = timeout_s - (time.monotonic() - started)
                    if left <= 0:
                        _stop(proc)
                        return past_limit(timeout_s)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=min(1.0, left))
                    why = watch() if watch and proc.poll() is None else None
                    if why:
                        _stop(proc)
                        return why
            except BaseException:
                _stop(proc)
                raise
        if proc.returncode == 0:
            return None
        if proc.returncode < 0:
            sig = signal.Signals(-proc.returncode).name
            hint = " (likely out of memory)" if sig == "SIGKILL" else ""
            return f"the trial process was killed by {sig}{hint}"
        tail = read_tail(log, TAIL_BYTES).strip().splitlines()[-1:] or [""]
        return f"the trial process exited with code {proc.returncode}: {tail[0][:200]}"


# How much of a failed trial's log is read to find its last line: a model may print gigabytes.
TAIL_BYTES = 64 * 2**10


def read_tail(path: Path, size: int) -> str:
    """The last `size` bytes of a file as text (all of a shorter one), read from its end."""
    with path.open("rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - size))
        return f.read().decode(errors="replace")


def past_limit(seconds: float) -> str:
    """The failure reason of a trial or build step stopped at its time limit."""
    return f"ran past its time limit of {seconds:.0f} s and was stopped"


def _stop(proc: subprocess.Popen | Child) -> None:
    """Kill the trial's whole process group (compile workers go with it) and reap it. Only
    a pid not reaped yet is signalled: a forked child's through the fork server, its parent;
    a reaped one may already be another process's (pids wrap around at 32768 here)."""
    if isinstance(proc, Child):
        proc.kill()
    elif proc.poll() is None:
        kill_group(proc.pid)
    proc.wait()


@dataclass(frozen=True)
class Ran:
    """How a child process's run ended: finished (no reason), failed (with the reason), or
    cut: stopped at what a time budget left it, shorter than its own limit, which says
    nothing about the candidate."""

    reason: str | None = None
    cut: bool = False

    @property
    def failed(self) -> bool:
        return self.reason is not None and not self.cut


def ended(reason: str | None, timeout_s: float, cap_s: float) -> Ran:
    """The outcome of a run under min(its limit, `cap_s`) that returned `reason`."""
    cut = cap_s < timeout_s and reason == past_limit(cap_s)
    return Ran(reason, cut=cut)


def timed_run(executor: Executor, limits: TimeLimits, baseline: bool, study: Path,
              candidate: str, phase: str, points: list[str], limit_phase: str | None = None,
              module: str = "hasten.infer.trial", cap_s: float = math.inf) -> Ran:
    """Run a trial under its phase's limit (or `cap_s`, what a time budget leaves, when that
    is shorter); the baseline's successful runs set the limits."""
    key = limit_phase or phase
    started = time.perf_counter()
    limit = limits.of(key)
    reason = executor.run(study, candidate, phase, points, min(limit, cap_s), module)
    if baseline and reason is None:
        limits.record(key, time.perf_counter() - started)
    return ended(reason, limit, cap_s)

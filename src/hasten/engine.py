"""The one study engine that inference and training studies run on: open or resume a study
folder, refuse other settings, register candidates with their skip reasons, run each phase's
trials through the executor, turn any child failure into rows, and finish.

The engine knows nothing of what a trial measures: each study names the module a trial runs
in and the kind of each point (hasten.infer.run, hasten.train.run).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, TypeVar

from hasten import machine
from hasten.config import Settings
from hasten.errors import HastenError
from hasten.executors import Executor, LocalExecutor, Ran, TimeLimits, timed_run
from hasten.folders import open_study_folder
from hasten.measure import busy_trials
from hasten.store import Meta, Store, read_study

Progress = Callable[[str, int, int], None]  # (what is running, done, total)
Log = Callable[[str], None]  # one line per finished trial
S = TypeVar("S")


def stored_settings(folder: Path, kind: type[Settings]) -> Settings | None:
    """The settings of the study a folder already holds, or None when it holds none."""
    if not (Path(folder) / "study.sqlite").is_file():
        return None
    store = Store(folder, readonly=True)
    try:
        stored = store.meta(Meta.CONFIG)
    finally:
        store.close()
    return kind.from_dict(stored) if stored and stored.get("kind") == kind.kind else None


class Engine:
    """One study folder being run with `settings` (checked by the study before its costly
    checks of the model); its store stays open until `run` ends.

    `module` is the module a trial process runs (`python -m module STUDY CANDIDATE PHASE
    POINTS`), and `kind_of` names the kind of each point it measures, stored with its row.
    `executor` (default: local processes) decides where; a study measures on one machine
    type, stored when it starts: resuming it on another type is refused.
    """

    def __init__(self, folder: Path, settings: Settings, *, module: str,
                 kind_of: Callable[[str], str], fresh: bool = False,
                 trial_timeout_s: float | None = None, log: Log | None = None,
                 executor: Executor | None = None):
        if trial_timeout_s is not None and not trial_timeout_s > 0:
            raise HastenError(f"`trial_timeout_s` must be more than 0 s, not {trial_timeout_s}.")
        folder = Path(folder)
        self.lock = open_study_folder(folder, fresh)
        try:
            self._open(folder, settings, executor)
        except BaseException:
            self.lock.release()
            raise
        self.folder, self.settings, self.module, self.kind_of = folder, settings, module, kind_of
        self.limits = TimeLimits(self.store, trial_timeout_s)
        self.log = log or (lambda _: None)

    def _open(self, folder: Path, settings: Settings, executor: Executor | None) -> None:
        """Open the study's store and refuse a study measured elsewhere or with other
        settings."""
        self.store = Store(folder)
        previous = self.store.meta(Meta.CONFIG)
        executor = executor or LocalExecutor()
        kind = executor.machine_type()
        if previous is None:
            self.store.set_meta(Meta.MACHINE, executor.machine())
            self.store.set_meta(Meta.MACHINE_TYPE, kind)
        described = self.store.meta(Meta.MACHINE)
        stored = self.store.meta(Meta.MACHINE_TYPE) or (
            machine.machine_type(described) if described else kind)
        if stored != kind:
            self.store.close()
            raise HastenError(f"{folder} was measured on machine type {stored['name']}, and "
                              f"this run would measure on {kind['name']}; speeds from two "
                              "machine types are never mixed in one study: set `name` to keep "
                              "both, or `fresh` to start it over.")
        if previous is not None and settings.upgrade(previous) != settings.to_dict():
            self.store.close()
            raise HastenError(f"{folder} holds a study with other settings; set `fresh` to "
                              "start it over, or `name` to keep both.")
        self.store.set_meta(Meta.CONFIG, settings.to_dict())
        self.executor = executor

    def register(self, position: int, name: str, passes: list[str], runtime: str,
                 settings: dict, skipped_reason: str | None) -> None:
        """Add a candidate (again, on resume) with the reason it cannot run here, if any."""
        self.store.add_candidate(position, name, passes, runtime, settings, skipped_reason)

    def launch(self, name: str, phase: str, points: list[str], *, first: bool = False,
               verdict: str | None = None, limit_phase: str | None = None,
               sets_limit: bool = True, cap_s: float = math.inf) -> Ran:
        """Run one candidate's phase in its own process (the executor decides where) under the
        phase's time limit, or `cap_s` when a time budget leaves less. A child that crashed,
        was killed or ran past its limit gets its rows here (see `record_failure`); one
        stopped at `cap_s` gets none, since the budget, not the candidate, stopped it. The
        baseline's run sets the limit of `limit_phase` (else `phase`) unless `sets_limit` is
        False. Returns how the child's run ended."""
        ran = timed_run(self.executor, self.limits,
                        sets_limit and name == self.settings.baseline, self.folder, name,
                        phase, points, limit_phase=limit_phase, module=self.module,
                        cap_s=cap_s)
        if ran.failed:
            self.record(name, points, ran.reason, first=first, verdict=verdict)
        return ran

    def record(self, name: str, points: list[str], reason: str, *, first: bool = False,
               verdict: str | None = None) -> None:
        """Record a failure found in this process (a build that failed) as `launch` does."""
        record_failure(self.store, name, {p: self.kind_of(p) for p in points}, reason,
                       first=first, verdict=verdict)

    def run(self, work: Callable[[], None], read: Callable[[Path], S],
            report: Callable[[S], object] | None = None) -> S:
        """Do the study's work, close the store and read the study back; `report` (a writer
        the caller passes: the engine does not import views) runs at the end, also when the
        work stopped on a HastenError."""
        try:
            try:
                work()
                self.store.set_meta(Meta.FINISHED, True)
            except HastenError:
                self._close()
                if report:
                    report(read(self.folder))
                raise
            finally:
                self._close()
            study = read(self.folder)
            if report:
                report(study)
            return study
        finally:
            self.lock.release()

    def close(self) -> None:
        """Close the store and let go of the study folder without running the study."""
        self._close()
        self.lock.release()

    def _close(self) -> None:
        """Close the store once, its log folded back, before the study is read back."""
        if self.store.db is not None:
            self.store.settle()
            self.store.close()
            self.store.db = None


def record_failure(store: Store, name: str, points: dict[str, str], reason: str, *,
                   first: bool = False, verdict: str | None = None,
                   one_time: dict | None = None) -> None:
    """Turn a failure into rows, for a trial process that caught it and for the parent whose
    child died alike: each point (`points`: point -> kind) not measured yet fails with the
    reason; in the candidate's `first` phase, a candidate without a result fails; in the phase
    that judges it (`verdict`, e.g. "converging"), one not judged yet is judged failed."""
    if first and name not in store.results():
        store.put_result(name, "failed", error=reason, one_time=one_time)
    done = store.done_points(name)
    for point, kind in points.items():
        if point not in done:
            store.put_trial(name, point, kind, "failed", error=reason)
    previous = store.results().get(name)
    if verdict and previous is not None and previous["status"] == "ok" \
            and previous["passed"] is None:
        store.put_result(name, "ok", fidelity={"error": reason}, passed=False,
                         gate_reason=f"failed while {verdict}: {reason}",
                         one_time=previous["one_time"], notes=previous["notes"])


class StudyRecord:
    """A study folder read back from its store, the part both studies share: settings,
    machine, candidates, results and trials. A folder of the other kind is refused with
    `other_kind`, a sentence each study writes."""

    settings_type: ClassVar[type[Settings]]
    other_kind: ClassVar[str]

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        stored = read_study(self.folder)
        self.meta = stored["meta"]
        self.config = self.meta.get(Meta.CONFIG)
        if self.config is None:
            raise HastenError(f"{self.folder} holds a study that has not started yet.")
        if self.config.get("kind") != self.settings_type.kind:
            raise HastenError(f"{self.folder} {self.other_kind}")
        self.settings = self.settings_type.from_dict(self.config)
        self.machine = self.meta.get(Meta.MACHINE)
        self.finished = bool(self.meta.get(Meta.FINISHED, False))
        self.candidates = stored["candidates"]
        self.results = stored["results"]
        self.trials = stored["trials"]
        self.baseline = self.settings.baseline

    def busy_points(self) -> int:
        """How many trials ran on a machine busy with other work (see measure.busy_trials)."""
        return busy_trials(self.trials, self.settings.threads)

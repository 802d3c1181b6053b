"""The training study from start to end: check the recipe, audit its numerics, measure every
candidate's speed in its own process, search the batch size under the memory budget, train the
fastest for the study's steps against fp32 and evaluate them."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import torch

from hasten import machine
from hasten.engine import Engine, Log, Progress, stored_settings
from hasten.errors import HastenError
from hasten.executors import Deadline, Executor, LocalExecutor
from hasten.folders import study_folder
from hasten.measure import memory_noise_mb
from hasten.options import TrainOptions
from hasten.store import Meta
from hasten.train import families
from hasten.train.demos import DEMOS as DEMO_RECIPES
from hasten.train.demos import KERAS_DEMOS
from hasten.train.families import TORCH, Family, family
from hasten.train.outcome import (
    SLOW_STEP_S,
    TOO_SLOW,
    phase_kind,
    runs_of,
    seed_point,
    too_slow_to_train,
)
from hasten.train.recipe import is_keras_recipe
from hasten.train.settings import TrainSettings
from hasten.train.state import TrainState
from hasten.train.study import TrainStudy

# Besides fp32, every precision mode, QAT and the larger batch, this many of the candidates
# faster than fp32 (and the lightest of those lighter than it) train to the end and are
# evaluated.
CONVERGE = 3
# The batch-size search stops doubling once one step takes longer than this: probing larger
# batches would cost minutes per probe on a CPU.
PROBE_STEP_LIMIT_S = 2.0
# The part of a time budget by which each step's runs must be expected to end: the numerics
# audit, timing every candidate, training the precision modes to the end, the batch-size
# search, the combined candidate, training the fastest to the end; and what a cut in each
# leaves out.
SHARES = {"audit": 0.3, "speed": 0.5, "modes": 0.7, "probe": 0.75, "combine": 0.8,
          "final": 0.95}
CUTS = {"speed": "not timed", "modes": "timed, not trained to the end",
        "probe": "the batch-size search stopped here", "combine": "not timed",
        "final": "timed, not trained to the end"}
# The bundled demo recipes and the settings `hasten train` runs them with: together within
# ten minutes on two cores.
DEMOS = {
    "digits": (DEMO_RECIPES["digits"], {"batch_size": 64, "steps": 150,
                                        "budget_s": 180.0}),
    "text": (DEMO_RECIPES["text"], {"batch_size": 16, "steps": 60, "quick": True,
                                    "budget_s": 360.0}),
    "keras-digits": (KERAS_DEMOS["keras-digits"], {"batch_size": 64, "steps": 150}),
}
# How long each speed run is timed, in seconds, unless `point_s` says.
POINT_S = 3.0
# What `hasten train` runs without a recipe: the demos the core install can run.
DEFAULT_DEMOS = ("digits", "text")


def optimize_training(
    recipe: str | Path,
    options: TrainOptions,
    *,
    progress: Progress | None = None,
    log: Log | None = None,
    report: Callable[[TrainStudy], object] | None = None,
    executor: Executor | None = None,
) -> TrainStudy:
    """Run (or resume) a training study of a recipe file and return it.

    Loading the recipe runs its code. `evaluate` None means: evaluate when the recipe defines
    eval_data() and evaluate(). Finished runs are kept in the study folder's database, so the
    same call again resumes. The options' `budget_s` bounds the study's wall time from this
    call (None: no bound; fp32's own runs are never cut); each run's time limit is
    `trial_timeout_s`, else a multiple of fp32's own time for the same phase; `log` gets one
    line per finished run; `report`, a writer of the HTML report (hasten.api passes one), runs
    at the end; `executor` runs the trials (default: local processes).

    A recipe whose model() returns a keras.Model is a Keras recipe: its candidates are dtype
    policies and Keras switches, each trial runs on `keras_backend` (tensorflow or torch;
    default tensorflow when installed, else torch), which reaches Keras before the recipe is
    imported.
    """
    o = options
    o.check_budget()
    executor = executor or LocalExecutor()
    backend = o.keras_backend or families.default_keras_backend()
    if backend not in families.KERAS_BACKENDS:
        raise HastenError(f"`keras_backend` must be tensorflow or torch, not {backend!r}.")
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = backend
    fam = families.KERAS if is_keras_recipe(recipe) else families.TORCH
    fam.refuse(o.keras_backend, backend, o.device, o.devices)
    loaded = fam.load(recipe)
    evaluate = fam.has_eval(loaded) if o.evaluate is None else o.evaluate
    folder = study_folder(o.out, loaded.path.stem if o.name is None else o.name,
                          executor.suffix)
    settings = TrainSettings(
        device=o.device, max_drop=o.max_drop, quick=o.quick, threads=executor.threads(),
        point_s=o.point_s or POINT_S, baseline=fam.baseline, model={}, recipe=str(loaded.path),
        steps=o.steps, batch_size=o.batch_size, eval=evaluate, devices=o.devices,
        memory_budget_mb=math.inf if o.memory_budget_mb is None else o.memory_budget_mb,
        keras_backend=backend if fam is families.KERAS else None,
    )
    settings.check()
    memory_budget_mb = o.memory_budget_mb
    if memory_budget_mb is None:
        # The budget a resumed study was started with, else what the device has free now.
        previous = None if o.fresh else stored_settings(folder, TrainSettings)
        memory_budget_mb = previous.memory_budget_mb if previous else free_memory_mb(o.device)
    facts, save = fam.check(loaded, o.batch_size, evaluate)
    settings = dataclasses.replace(settings, memory_budget_mb=memory_budget_mb, model=facts)
    engine = Engine(folder, settings, module=fam.runner, kind_of=phase_kind, fresh=o.fresh,
                    trial_timeout_s=o.trial_timeout_s, log=log, executor=executor)
    save(folder)
    for i, (c, in_quick) in enumerate(fam.menu()):
        engine.register(i, c.name, [], fam.runtime, c.settings(),
                        fam.skip_reason(c, settings, in_quick))
    progress = progress or (lambda *_: None)
    budget_s = math.inf if o.budget_s is None else o.budget_s
    return engine.run(lambda: TrainRun(engine, budget_s, progress,
                                       audit=o.audit and fam.audits).run(), TrainStudy, report)


def free_memory_mb(device: str) -> float:
    """The memory the device has free now: the default memory budget."""
    if device == "cuda":
        return torch.cuda.mem_get_info()[0] / 2**20
    return psutil.virtual_memory().available / 2**20


class Launcher:
    """Runs one candidate's phase through the engine within the time budget's share for its
    step (SHARES), and logs each run it finished in one line (a Keras trial process may finish
    the convergence run after the speed run); what the budget leaves out is recorded with its
    reason in the study's "budget" meta."""

    def __init__(self, engine: Engine, deadline: Deadline):
        self.engine, self.deadline = engine, deadline
        self.cuts: dict[str, str] = {}
        self._save()

    def _save(self) -> None:
        self.engine.store.set_meta(Meta.BUDGET, {"seconds": self.deadline.seconds,
                                              "cut": self.cuts})

    def cut(self, name: str, phase: str, what: str) -> str:
        """The reason the budget left a run out; a candidate's own run is shown with it."""
        why = self.deadline.cut(what)
        if phase_kind(phase) != "probe":
            self.cuts[name] = why
            self._save()
        return why

    def __call__(self, name: str, phase: str, share: str) -> str | None:
        """Run the phase; the reason when the budget left it out or stopped it, else None.
        fp32's own timing and training are never cut: everything is compared with them."""
        engine = self.engine
        exempt = name == engine.settings.baseline and phase_kind(phase) != "probe"
        if not exempt and not self.deadline.allows(share):
            return self.cut(name, phase, CUTS[share])
        cap = math.inf if exempt else self.deadline.left(share)
        before = engine.store.done_points(name)
        started = time.monotonic()
        kind = phase_kind(phase)
        ran = engine.launch(name, phase, [phase], first=phase == "speed",
                               verdict="converging" if kind == "converge" else None,
                               limit_phase={"probe": "speed"}.get(kind, kind),
                               sets_limit=phase_kind(phase) != "probe", cap_s=cap)
        if ran.cut:
            return self.cut(name, phase, f"{CUTS[share]} (stopped in its {phase} run)")
        self.deadline.record(share, time.monotonic() - started)
        for trial in engine.store.trials(name):
            if trial["point"] in before:
                continue
            if trial["status"] != "ok":
                engine.log(f"{name}  {trial['point']}  failed: {trial['error']}")
            else:
                engine.log(f"{name}  {trial['point']}  {trial['throughput']:.4g} samples/s  "
                           f"{trial['peak_mb']:.0f} MiB  ok")
        return None


def _diverged(store, name: str) -> str:
    """Why a candidate's speed run did not stay finite."""
    trial = next(iter(store.trials(name, kind="speed")), None)
    return ((trial or {}).get("details") or {}).get("diverged") or "its loss was not finite"


def _speeds(store) -> dict[str, float]:
    """Samples per second of every candidate whose speed run finished and stayed finite."""
    return {t["candidate"]: t["throughput"] for t in store.trials(kind="speed", status="ok")
            if not (t["details"] or {}).get("diverged")}


def _candidates(store, fam: Family) -> dict:
    return {c["name"]: fam.candidate(c["settings"]) for c in store.candidates()}


def speed_order(candidates: dict[str, Any], settings: TrainSettings,
                step_s: float | None) -> list[str]:
    """The order candidates are timed in: fp32 first, then the menu's order, except that on a
    CPU that only emulates a half type (many times slower than fp32) the candidates computing
    in it go last when fp32's step (`step_s`) is slow enough that theirs would take over
    SLOW_STEP_S: a time budget is then spent first on those that can win. Where steps are
    quick, timing them costs little and the precision modes keep their place."""
    slow = step_s is not None and step_s * TOO_SLOW > SLOW_STEP_S
    return sorted(candidates, key=lambda n: (
        n != settings.baseline,
        slow and emulated(candidates[n].precision, settings) is not None))


def _step_s(store, baseline: str) -> float | None:
    """fp32's median step time in seconds, once its speed run has finished."""
    return next((t["latency"]["p50"] / 1000
                 for t in store.trials(baseline, point="speed", status="ok")), None)


def emulated(precision: str, settings: TrainSettings) -> str | None:
    """The half type (fp16, bf16) a precision mode computes in when this CPU only emulates
    it, else None."""
    fam = family(settings)
    if settings.device != "cpu" or precision not in fam.modes:
        return None
    half = fam.half_type(precision)
    return None if machine.native_half(half) else half


def worth_training(store, baseline: str, fam: Family) -> list[str]:
    """The candidates to train to the end after the search, fastest first: those that always
    do (QAT, the larger batch, the combination), the CONVERGE fastest of those faster than
    fp32 and the lightest of those lighter than it beyond the memory noise; a candidate that
    beats fp32 on neither could not be recommended."""
    speeds = _speeds(store)
    rows = _candidates(store, fam)
    peaks = {t["candidate"]: t["peak_mb"] for t in store.trials(kind="speed", status="ok")}
    combined = TrainState.read(store.meta).combined
    always = [n for n in speeds if rows[n].converges or n == combined]
    others = [n for n in speeds if n != baseline and n not in always and n not in fam.modes]
    faster = sorted((n for n in others if speeds[n] > speeds[baseline]),
                    key=lambda n: -speeds[n])[:CONVERGE]
    base_mb = peaks[baseline]
    lighter = sorted((n for n in others if peaks[n] < base_mb - memory_noise_mb(base_mb)),
                     key=lambda n: peaks[n])[:1]
    # Fastest first: under a time budget, those that could be recommended for time train first.
    return sorted({*always, *faster, *lighter}, key=lambda n: (-speeds[n], n))


def _too_slow(speeds: dict[str, float], settings: TrainSettings) -> dict[str, str]:
    """The precision modes so much slower than fp32 here (TOO_SLOW times: a CPU that only
    emulates the half type) that they cannot win on time, and whose convergence run would
    take more than SLOW_CONVERGE_S, with the reason they are not trained to the end: on such
    a CPU those runs took most of the study (fp16 autocast ran the MiniLM demo 18x slower than
    fp32 on an AVX2 EPYC: 10 minutes for its 60 steps)."""
    base = speeds.get(settings.baseline)
    samples = settings.steps * settings.batch_size
    fam = family(settings)
    out = {}
    for mode in fam.modes:
        if base and mode in speeds and too_slow_to_train(speeds[mode], base, samples):
            half = emulated(mode, settings)
            note = f" (this CPU only emulates {half})" if half else ""
            out[mode] = (f"not trained to the end: it ran at {speeds[mode] / base:.2f}x "
                         f"{fam.word}'s samples per second here{note}, so it cannot win on "
                         "time; `hasten "
                         "numerics audit` judges its numerics")
    return out


def _skip_if_built_on_slow(engine: Engine, name: str) -> bool:
    """Skip a candidate built on a precision mode already found too slow to win here (its
    speed run would cost as much and show the same), with the reason; True when skipped."""
    store = engine.store
    row = next(c for c in store.candidates() if c["name"] == name)
    precision = family(engine.settings).candidate(row["settings"]).precision
    speeds = _speeds(store)
    if name == precision or precision not in _too_slow(speeds, engine.settings):
        return False
    ratio = speeds[precision] / speeds[engine.settings.baseline]
    engine.register(row["position"], name, row["passes"], row["runtime"], row["settings"],
                    f"it runs in {precision}, which ran at {ratio:.2f}x "
                    f"{family(engine.settings).word}'s samples per second here, so it cannot win "
                    "on time")
    return True


def fastest_passing_mode(store, fam: Family = TORCH) -> str:
    """The precision mode with the most samples per second among those that kept accuracy."""
    speeds, results = _speeds(store), store.results()
    passing = [m for m in (fam.baseline, *fam.modes)
               if m in speeds and (results.get(m) or {}).get("passed")]
    return max(passing, key=lambda m: speeds[m], default=fam.baseline)


class TrainRun:
    """The training study's phases, in order, over one state: the engine and its store, the
    time budget (`budget_s` from now) and its launcher, the progress callback and what the
    study decided so far (TrainState), which each phase reads and keeps as it goes so that the
    same call resumes."""

    def __init__(self, engine: Engine, budget_s: float, progress: Progress, audit: bool):
        self.engine, self.store, self.settings = engine, engine.store, engine.settings
        self.fam = family(self.settings)
        deadline = Deadline(budget_s, shares=SHARES)
        self.launch = Launcher(engine, deadline)
        self.deadline, self.progress, self.audits = deadline, progress, audit
        self.state = TrainState.read(self.store.meta)

    def run(self) -> None:
        """Audit, time every candidate, train fp32 and the precision modes to the end, search
        the batch size and combine the best switches on the fastest mode that kept accuracy,
        train the candidates that could win to the end, and repeat the seeds of those
        recommended."""
        if self.audits and self.state.needs_audit():
            self.audit()
        self.time_all()
        self.train_modes()
        precision = fastest_passing_mode(self.store, self.fam)
        self.search_batch_size(precision)
        self.combine(precision)
        self.converge(worth_training(self.store, self.settings.baseline, self.fam), "final")
        self.seed_recommendations()
        self.progress("done", 1, 1)

    def audit(self) -> None:
        """The numerics audit of the recipe (its trial keeps its verdict), or why it did not
        run."""
        self.progress("auditing the recipe's numerics", 0, 1)
        ran = (self.engine.launch(self.fam.baseline, "audit", [],
                                  cap_s=self.deadline.left("audit"))
               if self.deadline.allows("audit") else None)
        if ran is None or ran.cut:
            self.state.audit = {"error": self.deadline.cut("not audited"), "cut": True}
        elif ran.reason:
            self.state.audit = {"error": ran.reason}
        else:
            self.state = TrainState.read(self.store.meta)
            return
        self.state.save(self.store, "audit")

    def time_all(self) -> None:
        """Time every candidate that can run here, fp32 first; stop when fp32 fails."""
        store, settings, fam = self.store, self.settings, self.fam
        baseline = settings.baseline
        runnable = {c["name"]: fam.candidate(c["settings"])
                    for c in store.candidates() if not c["skipped_reason"]}
        total = len(runnable)
        for i in range(total):
            # Ordered again after each run: fp32's own step time decides where emulated modes
            # go.
            name = speed_order(runnable, settings, _step_s(store, baseline))[0]
            del runnable[name]
            self.progress(f"timing {name}", i, total)
            if name not in store.results() and not _skip_if_built_on_slow(self.engine, name):
                self.launch(name, "speed", "speed")
            if name == baseline and store.results()[name]["status"] != "ok":
                raise HastenError(f"The {fam.word} baseline failed: "
                                  f"{store.results()[name]['error']}. "
                                  f"See {store.folder / 'logs'} for details.")
            if name == baseline and baseline not in _speeds(store):
                raise HastenError(f"The {fam.word} baseline diverged while timed "
                                  f"({_diverged(store, name)}); fix the loss, the data or the "
                                  "learning rate first.")

    def train_modes(self) -> None:
        """fp32 and every precision mode train to the end first (some models converge in only
        one of them); those too slow to win here are left out, with why."""
        speeds = _speeds(self.store)
        self.state.too_slow = _too_slow(speeds, self.settings)
        self.state.save(self.store, "too_slow")
        self.converge([self.settings.baseline, *(m for m in self.fam.modes if m in speeds
                                                 and m not in self.state.too_slow)], "modes")

    def converge(self, names: list[str], share: str) -> None:
        """Train each candidate for the study's steps from fp32's start, and evaluate it; fp32
        with several seeds, whose spread each candidate is judged against."""
        store, settings = self.store, self.settings
        for i, name in enumerate(names):
            self.progress(f"training {name} for {settings.steps} steps", i, len(names))
            seeds = self.fam.seeds if name == settings.baseline else 1
            for k in range(seeds):
                if seed_point(k) not in store.done_points(name):
                    self.launch(name, seed_point(k), share)
            outcome = store.results()[name].get("fidelity") or {}
            if name == settings.baseline and not math.isfinite(outcome.get("final_loss",
                                                                            math.nan)):
                why = outcome.get("diverged") or outcome.get("error") or "no final loss"
                raise HastenError(f"The {self.fam.word} baseline failed to train for the "
                                  f"study's steps ({why}); fix the recipe first, see "
                                  f"{store.folder / 'logs'}.")

    def seed_recommendations(self) -> None:
        """Train each candidate whose verdict matters with fp32's number of seeds: those that
        would be recommended, so that a recommendation never rests on one lucky run, and those
        that could be (they beat fp32 beyond its spread) but one run left at "cannot tell".
        Their verdicts then cover all their runs, and a new recommendation gets the same (twice
        at most)."""
        store, settings, seeds = self.store, self.settings, self.fam.seeds
        for _ in range(2):
            study = TrainStudy(store.folder)
            chosen = {r["candidate"] for r in study.recommendations().values()
                      if r and r["candidate"] != settings.baseline}
            chosen |= {r["candidate"] for r in study.table()
                       if r["status"] == "cannot tell" and study.beats_fp32(r)}
            todo = sorted(n for n in chosen if len(runs_of(store, n)) < seeds)
            if not todo:
                return
            for i, name in enumerate(todo):
                self.progress(f"training {name} with {seeds} seeds", i, len(todo))
                for k in range(1, seeds):
                    if seed_point(k) not in store.done_points(name):
                        if self.launch(name, seed_point(k), "final"):
                            return

    def combine(self, precision: str) -> None:
        """Measure the fastest precision mode with every speed-only switch that beat fp32 by
        more than 5% on its own (the fastest of each kind): the one-line configuration to try
        first."""
        store, fam, state = self.store, self.fam, self.state
        if not state.combined_decided:
            speeds = _speeds(store)
            base = speeds.get(fam.baseline)
            rows = _candidates(store, fam)
            best: dict[str, str] = {}
            for name, c in rows.items():
                group = fam.speed_group(c)
                if (group and c.precision == fam.baseline and name in speeds
                        and speeds[name] > 1.05 * base
                        and speeds[name] > speeds.get(best.get(group, ""), 0)):
                    best[group] = name
            if best:
                c = fam.combine(precision, [rows[n] for n in best.values()])
                if c.name not in rows:
                    state.combined = c.name
                    self.engine.register(len(rows), c.name, [], fam.runtime, c.settings(), None)
            state.combined_decided = True
            state.save(store, "combined")
        if state.combined and state.combined not in store.results():
            self.progress(f"timing {state.combined}", 0, 1)
            self.launch(state.combined, "speed", "combine")

    def search_batch_size(self, precision: str) -> None:
        """Double the batch size of the precision mode while a probe fits the memory budget,
        then bisect between the last fit and the first miss; measure the winner."""
        state = self.state
        if state.batch_search is None or not state.batch_search.get("finished"):
            state.batch_search = self.probe_batch_sizes(precision)
            state.save(self.store, "batch_search")
        chosen = state.batch_search.get("candidate")
        if chosen and chosen not in self.store.results():
            self.progress(f"timing {chosen}", 0, 1)
            self.launch(chosen, "speed", "probe")

    def probe_batch_sizes(self, precision: str) -> dict:
        """The batch-size search's probes and its summary; not `finished` when the time budget
        stopped it (the same command again goes on from the probes done)."""
        store, settings, progress = self.store, self.settings, self.progress
        budget = settings.memory_budget_mb
        limit = settings.model["train_size"] // settings.devices
        probes: dict[int, dict] = {}

        def probe(size: int) -> dict | str:
            """The probe's result, or the reason the time budget left it out."""
            point = f"probe-b{size}"
            progress(f"batch-size search: {precision} at batch {size}", len(probes),
                     len(probes) + 1)
            if point not in store.done_points(precision):
                why = self.launch(precision, point, "probe")
                if why:
                    return why
            trial = store.trials(precision, point=point)[0]
            memory = trial["peak_mb"] if trial["status"] == "ok" else None
            fits = trial["status"] == "ok" and memory <= budget
            result = {"batch_size": size, "fits": fits, "memory_mb": memory,
                      "step_s": (trial["latency"]["p50"] / 1000 if trial["status"] == "ok"
                                 else None),
                      "error": trial["error"]}
            probes[size] = result
            return result

        best, miss, stopped, cut = settings.batch_size, None, None, None
        size = best
        while True:
            size *= 2
            if size > limit:
                stopped = f"the next size, {size}, is more than the {limit} training samples"
                break
            result = probe(size)
            if isinstance(result, str):
                cut = f"batch {size}: {result}"
                break
            if not result["fits"]:
                miss = size
                break
            best = size
            if result["step_s"] > PROBE_STEP_LIMIT_S:
                stopped = (f"one step at batch {size} took {result['step_s']:.1f} s; larger "
                           "batches were not probed")
                break
        while not cut and miss is not None and miss - best > max(8, best // 4):
            middle = (best + miss) // 2 // 8 * 8 or (best + miss) // 2
            result = probe(middle)
            if isinstance(result, str):
                cut = f"batch {middle}: {result}"
            elif result["fits"]:
                best = middle
            else:
                miss = middle
        if cut:
            stopped = cut
        elif miss is not None:
            stopped = (f"batch {miss} does not fit the budget of {budget:.0f} MiB"
                       + (f" ({probes[miss]['error']})" if probes[miss]["error"] else ""))
        summary = {"precision": precision, "budget_mb": budget, "largest": best,
                   "stopped": stopped, "probes": sorted(probes.values(),
                                                        key=lambda p: p["batch_size"]),
                   "finished": not cut}
        if not cut and best > settings.batch_size:
            fam = family(settings)
            c = fam.batch_candidate(precision, best)
            summary["candidate"] = c.name
            self.engine.register(len(store.candidates()), c.name, [], fam.runtime,
                                 c.settings(), None)
        return summary

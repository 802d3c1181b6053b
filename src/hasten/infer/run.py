"""The inference study from start to end: check the model and the data, screen every
candidate at one point, measure the survivors within the time budget, and confirm the leaders
in alternating rounds. Each trial runs in its own process (hasten.infer.trial)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from hasten import images as image_files
from hasten.data import demo_corpus, describe_file, read_texts, sample_indices
from hasten.engine import Engine, Log, Progress
from hasten.errors import HastenError
from hasten.executors import (
    Deadline,
    Executor,
    LocalExecutor,
    describe_seconds,
)
from hasten.folders import study_folder
from hasten.infer import artifacts, menu, search
from hasten.infer.settings import InferSettings
from hasten.infer.study import Study
from hasten.infer.workload import Workload, parse_point, point_inputs, point_kind, take_inputs
from hasten.kinds import LoadedModel
from hasten.models import absolute_spec, exported_model, load_model
from hasten.options import InferOptions
from hasten.pt2 import Exported
from hasten.store import Meta

DEFAULT_BATCH_SIZES = (1, 8, 32, 64)
DEFAULT_SEQ_LENGTHS = (32, 128)
# How long a study may take by default, without and with --quick (the README's promise).
DEFAULT_TIME_BUDGET_S = {False: 480.0, True: 120.0}
# The most texts a study feeds its model, from a data file or the demo corpus, without and
# with --quick: the demo's count, which the default time budget is sized for. The corpus job
# runs every text through the baseline and the leaders three to five times per pass, so its
# cost grows with the count while its figure, items per second, needs no more. At least
# BATCHES_PER_PASS batches of the largest batch size, so that a pass is never one batch.
MAX_TEXTS = {False: 1000, True: 300}
BATCHES_PER_PASS = 8
TRIAL = "hasten.infer.trial"


def optimize_inference(
    model: str | Exported,
    options: InferOptions,
    *,
    progress: Progress | None = None,
    log: Log | None = None,
    report: Callable[[Study], object] | None = None,
    executor: Executor | None = None,
) -> Study:
    """Run (or resume) an inference study of `model`, a model spec or an nn.Module captured
    by torch.export (hasten.pt2.capture; saved in the study folder as a `pt2:` file, which
    its trials load), and return it.

    Every candidate runs in its own process; finished trials are kept in the study folder's
    database, so running the same call again resumes instead of starting over. `report`, a
    writer of the HTML report (hasten.api passes one), runs when the study ends, also when its
    baseline failed. The options' `budget_s` bounds the study's wall time (default
    DEFAULT_TIME_BUDGET_S for the mode; math.inf for none); `point_s` is how long each
    workload point is measured. `executor` runs the trials (default: local processes).
    `max_length` is where texts are cut, in tokens, for the fidelity check and the passes over
    the corpus (default: all the model attends to, at most 512).
    A Hugging Face folder without saved weights is refused unless `random_weights` asks for
    it to be built from its config with seeded random weights (the model's info records it,
    and the report and the export say so).
    """
    o = options
    executor = executor or LocalExecutor()
    o.check_budget()
    budget_s = DEFAULT_TIME_BUDGET_S[o.quick] if o.budget_s is None else o.budget_s
    exported = model if isinstance(model, Exported) else None
    if exported is not None:
        home = study_folder(Path(o.out).resolve(), o.name or exported.name, executor.suffix)
        model = f"pt2:{exported.path(home)}"
        loaded = exported_model(exported.program, exported.program.module(check_guards=False),
                                model, exported.name)
        if exported.note and log:
            log(exported.note)
    else:
        model = absolute_spec(model)
        loaded = load_model(model, o.task, o.input_shape, random_weights=o.random_weights)
    workload = _workload(loaded, o.data, o.column, o.label_column, o.batch_sizes,
                         o.seq_lengths, o.quick, o.max_length, log)
    workload.calibration_samples = o.calibration_samples
    if _data_kind(o.data) == "batches":
        _add_inputs(loaded, workload, o.data, o.column or o.label_column)
    elif o.data is not None and not loaded.takes_text:
        _add_images(loaded, workload, Path(o.data), o.column or o.label_column, o.image_size,
                    o.mean, o.std)
    if (o.image_size, o.mean, o.std) != (None, None, None) and not workload.images:
        raise HastenError("`image_size`, `mean` and `std` say how to prepare an image folder; "
                          "give one as `data` to a model that takes images.")
    settings = InferSettings(
        device=o.device, max_drop=o.max_drop, quick=o.quick, threads=executor.threads(),
        point_s=o.point_s or (1.0 if o.quick else 3.0), baseline=menu.baseline_name(loaded),
        model=loaded.info(), spec=model, task=o.task,
        input_shape=list(o.input_shape) if o.input_shape else None, workload=workload,
    )
    settings.check()
    _check_forward(loaded, workload)
    folder = study_folder(o.out, loaded.name if o.name is None else o.name, executor.suffix)
    engine = Engine(folder, settings, module=TRIAL, kind_of=point_kind, fresh=o.fresh,
                    trial_timeout_s=o.trial_timeout_s, log=log, executor=executor)
    _keep_samples(engine, workload)
    for i, candidate in enumerate(menu.CANDIDATES):
        engine.register(i, candidate.name, list(menu.chain_for(candidate, loaded)),
                        candidate.runtime, candidate.settings,
                        menu.skip_reason(candidate, loaded, o.device, o.quick))

    def work() -> None:
        if exported is not None:
            _save_exported(exported, model)
        _run(engine, loaded, Deadline(budget_s), progress or (lambda *_: None))

    return engine.run(work, Study, report)


def _save_exported(exported: Exported, spec: str) -> None:
    """Write a captured module into its study folder, once (a resumed study keeps the file
    its trials loaded), and load it back as each trial will, so that a file the loader
    refuses stops the study in one sentence before any trial."""
    path = Path(spec.partition(":")[2])
    if not path.is_file():
        exported.save(path)
    load_model(spec)


def _data_kind(data: object) -> str | None:
    """What `data` is: None, "file" (a data file or an image folder), "texts" (a list of
    str) or "batches" (a DataLoader, or any other iterable of input batches)."""
    if data is None:
        return None
    if isinstance(data, str | os.PathLike):
        return "file"
    if isinstance(data, list | tuple) and data and all(isinstance(t, str) for t in data):
        return "texts"
    if isinstance(data, Iterable):
        return "batches"
    raise HastenError(f"`data` must be a file or folder, a list of texts or batches of input "
                      f"tensors (a DataLoader), not a {type(data).__name__}.")


def _workload(model: LoadedModel, data, column, label_column, batch_sizes, seq_lengths,
              quick: bool, max_length: int | None, log: Log | None = None) -> Workload:
    """The workload's points and, for a text model, its texts (a sample of a data file, the
    texts given, or the demo corpus)."""
    batch_sizes = list(batch_sizes or ((1, 8) if quick else DEFAULT_BATCH_SIZES))
    if not batch_sizes or any(b < 1 or b > 4096 for b in batch_sizes):
        raise HastenError(f"Batch sizes must be between 1 and 4096, not {batch_sizes}.")
    if model.fixed_batch and batch_sizes != [model.fixed_batch]:
        if log:
            log(f"{model.name} takes batch {model.fixed_batch} only (its batch dimension is "
                f"not dynamic), so the study measures that instead of {batch_sizes}.")
        batch_sizes = [model.fixed_batch]
    texts, labels, source = [], None, {}
    kind = _data_kind(data)
    if kind in ("texts", "batches") and (kind == "texts") != model.takes_text:
        wanted = ("texts (a list of str, or a file)" if model.takes_text
                  else "batches of input tensors (a DataLoader)")
        raise HastenError(f"{model.name} takes {'text' if model.takes_text else 'tensors'}; "
                          f"give `data` as {wanted}.")
    if model.takes_text:
        if kind == "file" and Path(data).is_dir():
            raise HastenError(f"{data} is a folder, and {model.name} takes text; pass a .txt, "
                              ".csv or .jsonl file.")
        limit = max(MAX_TEXTS[quick], BATCHES_PER_PASS * max(batch_sizes))
        if kind == "texts":
            source = {"path": None, "given": "texts", "found": len(data)}
            texts = [data[i] for i in sample_indices(len(data), limit)]
        elif data is not None:
            texts, labels = read_texts(Path(data), column, label_column)
            source = {**describe_file(Path(data)), "column": column,
                      "label_column": label_column, "found": len(texts)}
            keep = sample_indices(len(texts), limit)
            texts = [texts[i] for i in keep]
            labels = [labels[i] for i in keep] if labels else None
        else:
            corpus = demo_corpus()
            texts, source = corpus[:limit], {"path": None, "found": len(corpus)}
        seq_lengths = list(seq_lengths or ((128,) if quick else DEFAULT_SEQ_LENGTHS))
        if any(s < 2 or s > model.max_length for s in seq_lengths):
            raise HastenError(
                f"Sequence lengths must be between 2 and {model.max_length} for this model, "
                f"not {seq_lengths}."
            )
    if max_length is not None and not 2 <= max_length <= model.max_length:
        raise HastenError(f"`max_length` must be between 2 and {model.max_length} tokens for "
                          f"this model, not {max_length}.")
    return Workload(
        texts=texts, labels=labels, batch_sizes=sorted(set(batch_sizes)),
        seq_lengths=sorted(set(seq_lengths or [])), eval_samples=128 if quick else 256,
        dataset_batch_size=max(batch_sizes), max_length=max_length or model.max_length,
        data=source,
    )


def _add_inputs(model: LoadedModel, workload: Workload, batches: Iterable,
                column: str | None) -> None:
    """Feed the workload from the user's batches of input tensors: as many samples as the
    fidelity subset and calibration use (at least the largest batch), and their labels when
    the batches carry them."""
    if column:
        raise HastenError("Labels in `data`'s batches come after the inputs; `column` and "
                          "`label_column` are for text files.")
    limit = max(workload.eval_samples + workload.calibration_samples, max(workload.batch_sizes))
    workload.inputs, workload.labels = take_inputs(model, batches, limit)
    workload.data = {"path": None, "given": "batches", "found": workload.rows()}


def _keep_samples(engine: Engine, workload: Workload) -> None:
    """Write the samples into the study folder (its settings describe them only) once the
    engine has accepted the settings, and say when they are a sample of a data file."""
    workload.write_samples(engine.folder)
    found, used = workload.data.get("found", 0), len(workload.texts)
    if workload.data.get("path") and workload.texts and found > used:
        engine.log(f"{workload.data['path']} holds {found:,} texts; the study uses a fixed "
                   f"random sample of {used:,} of them.")


def _add_images(model: LoadedModel, workload: Workload, folder: Path, column: str | None,
                image_size: tuple[int, int] | None, mean: list[float] | None,
                std: list[float] | None) -> None:
    """Feed the workload from an image folder, prepared as the model's config and the flags say."""
    if not folder.is_dir():
        raise HastenError(f"`data` for {model.name} must be a folder of images (flat, or "
                          f"DIR/<label>/<image>), and {folder} is not a folder.")
    if column:
        raise HastenError("An image folder's labels come from its class folders; `column` and "
                          "`label_column` are for text files.")
    workload.image = image_files.override(model.image_preparation(), image_size, mean, std)
    workload.images, workload.labels = image_files.read_folder(folder)
    workload.data = {"path": str(folder.resolve()), "found": len(workload.images)}


def _check_forward(model: LoadedModel, workload: Workload) -> None:
    """Run the model once on two real samples, so a broken forward is one clear error."""
    if not model.is_torch:
        return
    point = model.point(2, min(workload.seq_lengths, default=None))
    try:
        with torch.inference_mode():
            out = model.module(*point_inputs(model, workload, point)[0])
    except HastenError:
        raise
    except Exception as exc:
        raise HastenError(
            f"The model's forward fails on the inputs ({type(exc).__name__}: {exc}); "
            "check `input_shape` or the data."
        ) from exc
    classes = (max(workload.labels) + 1 if (workload.images or workload.inputs)
               and workload.labels else 0)
    if classes and (out.dim() != 2 or out.shape[1] < classes):
        where = (f"The image folder has {classes} class folders" if workload.images
                 else f"The labels in `data` go up to {classes - 1}")
        raise HastenError(f"{where}, and the model's output is shaped {tuple(out.shape)}; "
                          "accuracy needs one score per class.")


def _run(engine: Engine, model: LoadedModel, deadline: Deadline, progress: Progress) -> None:
    """Screen every runnable candidate at one point, then measure the survivors fully, fastest
    first, within the time budget; what the budget left out is recorded with its reason."""
    InferRun(engine, model, deadline, progress).run()


class InferRun:
    """One inference study's run: its phases (screen the baseline and measure it whole, screen
    the likely winners, tune their runtime settings, screen the rest, measure the survivors at
    the objective points, then the leaders on everything, confirm) as methods over one state."""

    def __init__(self, engine: Engine, model: LoadedModel, deadline: Deadline,
                 progress: Progress):
        self.engine, self.model, self.deadline, self.progress = engine, model, deadline, progress
        self.store, self.settings = engine.store, engine.settings
        self.baseline = self.settings.baseline
        self.cuts: dict[str, str] = {}  # candidate -> what the budget left out, and why
        self.latency_points = self.settings.workload.latency_points(model.kind)
        self.screen = search.screen_point(self.latency_points)
        self.objective = search.objective_points(self.latency_points, self.screen)
        # The candidates whose corpus job is measured: the baseline, then the leaders.
        self.with_dataset = {self.baseline}

    def run(self) -> None:
        self._save_cuts()
        rows = {c["name"]: c for c in self.store.candidates()}
        if rows[self.baseline]["skipped_reason"]:
            raise HastenError(f"The baseline {self.baseline} cannot run here: "
                              f"{rows[self.baseline]['skipped_reason']}.")
        # The baseline first and whole: every speedup is against it, and its cost tells the
        # time budget what a full measurement costs. Its objective points first, as every
        # survivor's are measured (so that their cost tells the budget what one survivor's
        # costs), and its ideal batch size sets its corpus job's.
        self.screen_all([self.baseline], "screening", "screen")
        self.measure(self.baseline, self.objective, "objective")
        self.measure(self.baseline, self.everything(self.baseline))
        # The likely winners first, then their runtime settings (tuning the leader pays more
        # than the menu's long tail), then the rest of the menu, and a new leader's settings.
        rest = self.screen_all([n for n, r in rows.items()
                                if not r["skipped_reason"] and n != self.baseline],
                               "screening", "screen", search.LIKELY)
        self.tune()
        self.screen_all(rest, "screening", "screen")
        self.tune()
        self.measure_survivors()
        _confirm(self.engine, self.progress)
        self.progress("done", 1, 1)

    def _save_cuts(self) -> None:
        self.store.set_meta(Meta.BUDGET, {"seconds": self.deadline.seconds, "cut": self.cuts})

    def drop(self, name: str, reason: str) -> None:
        """Leave a candidate out, with the reason."""
        self.cuts[name] = reason
        self._save_cuts()

    def cut(self, name: str, what: str) -> None:
        """Leave a candidate out because the budget's share for this phase is spent."""
        self.drop(name, self.deadline.cut(what))

    def screened(self) -> dict[str, float]:
        """Each screened candidate's median latency at the screening point."""
        return {t["candidate"]: t["latency"]["p50"]
                for t in self.store.trials(point=self.screen, status="ok")}

    def screened_fully(self, name: str) -> bool:
        """Whether a candidate's screening is done: it failed, or it has its screening point
        (a screening killed after the fidelity check but before the timing is run again)."""
        result = self.store.results().get(name)
        return result is not None and (result["status"] != "ok"
                                       or self.screen in self.store.done_points(name))

    def screen_all(self, names: list[str], what: str, phase: str,
                   last_step: float = math.inf) -> list[str]:
        """Screen the named candidates, each time the first in screening order given what has
        been screened so far, up to those of step `last_step`; return the names left."""
        rows = {c["name"]: c for c in self.store.candidates()}
        remaining = list(names)
        while remaining:
            so_far = self.screened()
            passing = search.passing(self.store.results(), so_far)
            step, name = next((step, n) for step, n in search.screening_steps(
                list(rows.values()), self.baseline, self.settings.device, passing, so_far)
                if n in remaining)
            if step > last_step:
                return remaining
            remaining.remove(name)
            self.progress(f"{what} {name}", len(names) - len(remaining) - 1, len(names))
            if not self.screened_fully(name):
                self.screen_one(name, rows, remaining, phase, so_far, passing)
            if name == self.baseline and self.store.results()[name]["status"] != "ok":
                raise HastenError(
                    f"The baseline ({self.baseline}) failed: "
                    f"{self.store.results()[name]['error']}. "
                    f"See {self.store.folder / 'logs'} for details.")
        return []

    def screen_one(self, name: str, rows: dict[str, dict], remaining: list[str], phase: str,
                   so_far: dict[str, float], passing: dict[str, float]) -> None:
        """Build one candidate's chain and screen it, unless it cannot win or the budget's
        share is spent; a build or trial the budget stopped leaves it out with the reason."""
        deadline = self.deadline
        hopeless = (None if name == self.baseline or deadline.seconds == math.inf else
                    search.cannot_win(rows[name], list(rows.values()), so_far, passing))
        if hopeless:
            self.drop(name, hopeless)
            return
        if name != self.baseline and not deadline.allows(phase):
            self.cut(name, "not screened")
            return
        started = time.monotonic()
        # Without a time limit, one process builds what every later candidate needs (one start
        # for all); under one, only this candidate's own chain, so that the budget is spent in
        # screening order.
        later = ({n: tuple(rows[n]["passes"]) for n in remaining if not self.screened_fully(n)}
                 if deadline.seconds == math.inf else {})
        # What the budget leaves this phase: the build and then the trial stop there.
        capped = name != self.baseline
        stop = deadline.cap(phase) if capped else math.inf
        ran = artifacts.ensure_built(self.engine, name, tuple(rows[name]["passes"]), later,
                                     stop)
        if ran.failed:
            self.engine.record(name, [self.screen], ran.reason, first=True)
        elif not ran.cut:
            stop = deadline.cap(phase) if capped else math.inf
            ran = self.engine.launch(name, "screen", [self.screen], first=True, cap_s=stop)
        if ran.cut:
            self.drop(name, f"stopped while it was screened, after {stop:.0f} s: no one "
                            "candidate may take more than half of what the study's time "
                            f"budget of {describe_seconds(deadline.seconds)} has left; run "
                            "the same command again (or with a larger time budget) to go on")
            return
        log_trials(self.store, name, [self.screen], self.engine.log)
        deadline.record(phase, time.monotonic() - started)

    def measure(self, name: str, wanted: list[str], phase: str = "full") -> None:
        """Measure a candidate on the points it has not done yet, within the budget's share
        for this phase ("objective": the objective points first; "full": the rest, called
        "corpus" when it holds the corpus job, whose cost is of another order)."""
        store, deadline = self.store, self.deadline
        todo = [p for p in wanted if p not in store.done_points(name)]
        if not todo:
            return
        if phase == "full" and any(point_kind(p) == "corpus" for p in todo):
            phase = "corpus"
        so_far = self.screened()
        scale = (so_far[name] / so_far[self.baseline]
                 if name in so_far and self.baseline in so_far else 1.0)
        if name != self.baseline and not deadline.allows(phase, scale):
            done = set(store.done_points(name))
            self.cut(name, "measured at the screening point only" if done <= {self.screen}
                     else "measured at the objective points only")
            return
        started = time.monotonic()
        cap = math.inf if name == self.baseline else deadline.cap(phase)
        ran = self.engine.launch(name, phase, todo, limit_phase="full", cap_s=cap)
        if ran.cut:
            self.cut(name, "stopped while it was measured (measured in part)")
        log_trials(store, name, todo, self.engine.log)
        deadline.record(phase, time.monotonic() - started, scale)

    def everything(self, name: str) -> list[str]:
        """Every point a candidate is measured at: the latency grid, and for the baseline and
        the leaders the corpus job, at its ideal batch size too."""
        if name not in self.with_dataset:
            return list(self.latency_points)
        measured = {t["point"]: t for t in self.store.trials(name, status="ok")}
        ideal = search.ideal_point(measured, parse_point(self.screen)["seq"])
        return list(self.latency_points) + self.settings.workload.dataset_points(
            self.model.kind, ideal and parse_point(ideal)["batch"])

    def add_and_screen(self, new: list[dict]) -> None:
        """Register new variants and screen them."""
        known = {c["name"] for c in self.store.candidates()}
        for variant in new:
            if variant["name"] not in known:
                self.engine.register(len(known), variant["name"], variant["passes"],
                                     variant["runtime"], variant["settings"], None)
                known.add(variant["name"])
        self.screen_all([v["name"] for v in new], "tuning", "tune")

    def tune(self) -> None:
        """The fastest chain of each runtime near the leader, again with the runtime settings
        worth searching (not in --quick, which measures the fixed menu only; a study without
        a time budget tunes every runtime, with every setting), then the settings that each
        won, together."""
        if self.settings.quick:
            return
        store = self.store
        tuned = search.variants(store.candidates(), store.results(), self.screened(),
                                self.settings.threads,
                                budgeted=self.deadline.seconds != math.inf)
        self.add_and_screen(tuned)
        self.add_and_screen(search.composites(tuned, store.results(), self.screened()))

    def measure_survivors(self) -> None:
        """Successive halving: every survivor at the points the objectives are judged at (each
        batch size at the screening length), then the leaders there on everything else."""
        keep = [n for n in search.survivors(self.store.results(), self.screened(),
                                            self.baseline) if n != self.baseline]
        for i, name in enumerate(keep):
            self.progress(f"measuring {name} at the objective points", i, len(keep))
            self.measure(name, self.objective, "objective")
        keep = search.leaders_first(keep, self.store.trials(), self.objective)
        self.with_dataset |= set(keep[: search.DATASET_PASS_CANDIDATES])
        for i, name in enumerate(keep):
            self.progress(f"measuring {name}", i, len(keep))
            self.measure(name, self.everything(name))


def _confirm(engine: Engine, progress: Progress) -> None:
    """Time the baseline and each objective's leaders again in one process, in alternating
    rounds; the final ranking uses these figures (see hasten.infer.confirm)."""
    store = engine.store
    plan = Study(store.folder).confirmation_plan()
    done = store.meta(Meta.CONFIRMATION) or {}
    if done.get("plan") == plan and set(done.get("results", {})) >= set(plan):
        return
    if not plan:
        return
    store.set_meta(Meta.CONFIRMATION, {"plan": plan})
    progress("confirming the leaders in alternating rounds", 0, 1)
    reason = engine.executor.run(store.folder, "confirm", "confirm", list(plan),
                                 engine.limits.of("full"), module="hasten.infer.confirm")
    results = (store.meta(Meta.CONFIRMATION) or {}).get("results", {})
    for point in plan:
        if point not in results:
            results[point] = {"error": reason or "the confirmation process wrote no result"}
        outcome = results[point]
        if "error" in outcome:
            engine.log(f"confirmation at {point} failed: {outcome['error']}")
        else:
            for name, c in outcome["candidates"].items():
                engine.log(f"{name}  {point}  confirmed {c['speedup']:.2f}x "
                           f"({c['speedup_low']:.2f}-{c['speedup_high']:.2f}) in "
                           f"{c['rounds']} rounds" + ("" if c.get("agrees", True) else
                                                     f"; {c['p50']:.3g} ms against "
                                                     f"{c['alone_p50']:.3g} ms alone"))
    store.set_meta(Meta.CONFIRMATION, {"plan": plan, "results": results})


def log_trials(store, name: str, points: list[str], log: Log) -> None:
    """One plain line per finished trial: candidate, point, median latency and status."""
    trials = {t["point"]: t for t in store.trials(name)}
    for point in points:
        t = trials.get(point)
        if t is None:
            continue
        if t["status"] == "ok":
            log(f"{name}  {point}  p50 {t['latency']['p50']:.4g} ms  ok")
        else:
            log(f"{name}  {point}  failed: {t['error']}")

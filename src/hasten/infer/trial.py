"""One candidate's trials, run in a child process: build the artifact, check fidelity against
the baseline, and measure each workload point, writing each row to the store as it finishes.

Run as `python -m hasten.infer.trial STUDY_DIR CANDIDATE PHASE POINTS`.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import traceback
from pathlib import Path

from hasten import fidelity
from hasten.engine import record_failure
from hasten.errors import describe_error
from hasten.infer import artifacts, passes, runtimes
from hasten.infer.passes import Artifact, PassContext
from hasten.infer.settings import InferSettings
from hasten.infer.workload import eval_batches, parse_point, point_inputs, point_kind
from hasten.measure import Budget, Clock, MemoryWatch, peak_gpu_memory_mb, repeat, stats
from hasten.models import load_model
from hasten.store import Meta, Store

DATASET_BUDGET = Budget(warmup=0, min_reps=3, max_reps=5, seconds=0.0, rel_tol=0.05)


def build(study: Path, settings: InferSettings, chain: tuple[str, ...], one_time: dict):
    """Load the model and apply the chain, reusing file artifacts an earlier trial wrote."""
    start, artifact, costs = artifacts.cached(study, chain)
    one_time.update(costs)
    t0 = time.perf_counter()
    calibrating = any(passes.REGISTRY[p].calibrates for p in chain[start:])
    model = load_model(settings.spec, settings.task, settings.input_shape,
                       with_weights=artifact is None or calibrating,
                       random_weights=settings.model.get("random_weights", False))
    model.input_names = settings.model["input_names"]
    one_time["load_s"] = time.perf_counter() - t0
    if artifact is None:
        artifact = (Artifact("torch", module=model.module) if model.is_torch
                    else Artifact("onnx", path=model.onnx_path))
    workload = settings.workload
    workload.read_samples(study)
    sample = point_inputs(model, workload, model.point(2, 16))[0]
    for i in range(start, len(chain)):
        step = passes.REGISTRY[chain[i]]
        folder = artifacts.folder(study, chain[: i + 1])
        writing = artifacts.started(folder, step.output_file is not None)
        t0 = time.perf_counter()
        facts = artifact.facts
        artifact = step.apply(artifact, PassContext(model, sample, writing, settings.device,
                                                    workload, settings.max_drop))
        artifact.facts = {**facts, **artifact.facts}  # a later pass keeps what earlier ones found
        one_time[f"{step.name}_s"] = time.perf_counter() - t0
        artifact = artifacts.finished(folder, writing, artifact, one_time[f"{step.name}_s"])
    return model, workload, artifact


def build_only(store: Store, study: Path, settings: InferSettings, names: list[str]) -> None:
    """Build the file prefix of each named candidate's chain, one after the other, for the
    candidates that share them; a failing step is recorded once, for all of them."""
    chains = {c["name"]: tuple(c["passes"]) for c in store.candidates()}
    for name in names:
        prefix = artifacts.missing(store, chains[name])
        if prefix is None:
            continue
        try:
            build(study, settings, prefix, {})
        except Exception as exc:
            step = artifacts.unfinished_step(study, prefix) or prefix
            artifacts.record_build_failure(store, step, describe_error(exc))
            traceback.print_exc()


def run(study: Path, name: str, phase: str, points: list[str]) -> None:
    store = Store(study)
    settings = InferSettings.from_dict(store.meta(Meta.CONFIG))
    row = next(c for c in store.candidates() if c["name"] == name)
    if phase == "build":
        build_only(store, study, settings, points)
        return
    device = settings.device
    runtime = runtimes.REGISTRY[row["runtime"]]
    for library in (runtime.library, "transformers" if settings.hugging_face() else None):
        if library:
            importlib.import_module(library)
    memory = MemoryWatch()
    one_time: dict = {}
    try:
        model, workload, artifact = build(study, settings, tuple(row["passes"]), one_time)
        t0 = time.perf_counter()
        runner = runtime.build(artifact, row["settings"], settings.threads, device)
        one_time["build_s"] = time.perf_counter() - t0
        if artifact.module is not model.module:
            model.module = None  # the source model: not what the candidate holds
        first = point_inputs(model, workload, points[0])[0] if points else None
        if first is not None:
            t0 = time.perf_counter()
            runner(first)
            one_time["first_call_s"] = time.perf_counter() - t0
        if phase == "screen":
            _fidelity(store, study, settings, name, model, workload, runner, artifact,
                      one_time)
    except Exception as exc:
        record_failure(store, name, {p: point_kind(p) for p in points}, describe_error(exc),
                       first=phase == "screen", one_time=one_time)
        traceback.print_exc()
        return
    clock = Clock(cuda=device == "cuda")
    budget = Budget(seconds=settings.point_s)
    corpus_runner = None
    for point in points:
        try:
            batches = point_inputs(model, workload, point)
            if parse_point(point)["dataset"] and corpus_runner is None:
                corpus_settings = runtime.corpus_settings(row["settings"])
                corpus_runner = runner if corpus_settings == row["settings"] else (
                    runtime.build(artifact, corpus_settings, settings.threads, device))
            memory.restart()
            if parse_point(point)["dataset"]:
                samples = repeat(lambda b=batches, r=corpus_runner: [r(x) for x in b],
                                 DATASET_BUDGET, clock)
                items = len(workload.texts)
            else:
                samples = repeat(lambda b=batches[0]: runner(b), budget, clock)
                items = batches[0][0].shape[0]
            latency = stats(samples)
            latency["load_avg"] = os.getloadavg()[0]
            gpu = peak_gpu_memory_mb()
            if gpu is not None:
                latency["peak_gpu_mb"] = gpu
            store.put_trial(name, point, point_kind(point), "ok", latency=latency,
                            throughput=items / (latency["p50"] / 1000), items=items,
                            peak_mb=memory.held_mb())
        except Exception as exc:
            record_failure(store, name, {point: point_kind(point)}, describe_error(exc))
            traceback.print_exc()


def _fidelity(store: Store, study: Path, settings: InferSettings, name: str, model, workload,
              runner,
              artifact: Artifact, one_time: dict) -> None:
    """Run the evaluation subset; the baseline saves it as the reference, others compare."""
    batches, order = eval_batches(model, workload)
    outputs = [runner(b).float().cpu() for b in batches]
    masks = [model.attention_mask(b) for b in batches]
    labels = ([workload.labels[i] for i in order] if workload.labels else None)
    reference_file = study / "reference.npz"
    if name == settings.baseline:
        fidelity.save_reference(reference_file, outputs)
    reference = fidelity.load_reference(reference_file)
    metrics = fidelity.compare(reference, outputs, masks, model.task, labels)
    base = store.results().get(settings.baseline, {}).get("fidelity") or metrics
    passed, reason = fidelity.gate(metrics, base, settings.max_drop)
    store.put_result(name, "ok", fidelity=metrics, passed=passed, gate_reason=reason,
                     one_time=one_time, size_bytes=artifact.size_bytes(), notes=artifact.notes,
                     facts=artifact.facts)


def main() -> None:
    study, name, phase, points = sys.argv[1:5]
    run(Path(study), name, phase, [p for p in points.split(",") if p])


if __name__ == "__main__":
    main()

"""Interleaved confirmation of an inference study, run in a child process: the baseline and
the leaders of each objective's point are timed again in alternating rounds, each form in a
worker process of its own (hasten.rounds). The final ranking uses these figures.

Run as `python -m hasten.infer.confirm STUDY_DIR confirm confirm POINTS`; the candidates of each
point are the study's meta `confirmation.plan`. A worker is the same module with the phase
`worker` and the candidate's name.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from hasten import rounds
from hasten.infer import runtimes
from hasten.infer.settings import InferSettings
from hasten.infer.trial import build
from hasten.infer.workload import point_inputs
from hasten.measure import Clock
from hasten.store import Meta, Store

MODULE = "hasten.infer.confirm"


def run(study: Path, points: list[str]) -> None:
    """Confirm each point's forms in alternating rounds (see hasten.rounds.run)."""
    store = Store(study, readonly=True)
    baseline = InferSettings.from_dict(store.meta(Meta.CONFIG)).baseline
    store.close()
    rounds.run(study, points, baseline, MODULE)


def worker(study: Path, name: str, points: list[str]) -> None:
    """One form in this process: build it as its trial does, warm it at each point, then
    answer each request `POINT N` with the median of N calls there (s). Replies go to the
    original stdout; whatever the libraries print goes to the log (stderr)."""
    reply = rounds.replies()
    store = Store(study, readonly=True)
    settings = InferSettings.from_dict(store.meta(Meta.CONFIG))
    row = next(c for c in store.candidates() if c["name"] == name)
    runtime = runtimes.REGISTRY[row["runtime"]]
    if runtime.library:  # the runtime's library first, as a trial loads it
        importlib.import_module(runtime.library)
    if settings.hugging_face():
        importlib.import_module("transformers")
    model, workload, artifact = build(study, settings, tuple(row["passes"]), {})
    if artifact.module is not model.module:
        model.module = None  # the source model: not what the candidate holds
    runner = runtime.build(artifact, row["settings"], settings.threads, settings.device)
    batches = {point: point_inputs(model, workload, point)[0] for point in points}
    store.close()
    clock = Clock(cuda=settings.device == "cuda")
    for batch in batches.values():
        runner(batch)
        runner(batch)
    rounds.serve(reply, lambda point: clock.time(lambda b=batches[point]: runner(b)))


def main() -> None:
    rounds.main(run, worker)


if __name__ == "__main__":
    main()

"""The Python API that the command line and users call: the two studies, opening a study
folder, comparing two studies, and the HTML report. It sits above the studies and the views,
so that neither imports the other."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hasten.errors import HastenError
from hasten.executors import Executor, LocalExecutor
from hasten.generate import run as generate_run
from hasten.generate.decoder import is_decoder
from hasten.generate.study import GenerateStudy
from hasten.infer import run as infer_run
from hasten.infer.study import Study
from hasten.models import absolute_spec
from hasten.report import write_report
from hasten.report.compare import Comparison
from hasten.report.compare import compare as compare_studies
from hasten.store import Store
from hasten.train import run as train_run
from hasten.train.study import TrainStudy

# Options of the inference study that a decoder's generation study does not take, and the
# reverse; a CLI or API call passes None for one it was not given.
ENCODER_OPTIONS = ("label_column", "input_shape", "image_size", "mean", "std", "seq_lengths",
                   "max_length", "calibration_samples")
DECODER_OPTIONS = ("prompt_lengths", "new_tokens")


def optimize_inference(model: str = "demo", *, report: bool = True, executor: str = "local",
                       ray_address: str | None = None, ray_share: bool = False,
                       ray_shared_path: str | Path | None = None,
                       machine_type: str | None = None, per_machine_type: bool = False,
                       **options: Any) -> Study | GenerateStudy | list:
    """Run (or resume) an inference study of `model`, a model spec, and return it; a decoder
    language model (`demo-decoder`, or an hf: folder of a ...ForCausalLM, or `task`
    text-generation) gets the generation study (hasten.generate.run.optimize_generation).

    Every candidate runs in its own process; finished trials are kept in the study folder's
    database, so running the same call again resumes instead of starting over. With `report`,
    the study folder gets its HTML report when the study ends, also when its baseline failed.
    `executor` "ray" runs the trials on a Ray cluster (see `executors_for`); with
    `per_machine_type` one study per machine type of the cluster is run, at once, and returned
    as a list, with a page comparing them (NAME.machine-types.html beside their folders).
    `options` are those of hasten.infer.run.optimize_inference (data, batch_sizes, max_drop,
    time_budget_s, random_weights for a folder without saved weights, ...).
    """
    executors = executors_for(executor, ray_address, ray_share, ray_shared_path, machine_type,
                              per_machine_type, options.get("device", "cpu"))
    model = absolute_spec(model)  # a Hub id is downloaded (or found in the cache) once, here
    decoder = model == generate_run.DEMO or is_decoder(model, options.get("task"))
    given = {k: v for k, v in options.items()
             if v is not None or k not in ENCODER_OPTIONS + DECODER_OPTIONS}
    wrong = [k for k in (ENCODER_OPTIONS if decoder else DECODER_OPTIONS) if k in given]
    if wrong:
        raise HastenError(f"`{wrong[0]}` does not apply to {model}, "
                          f"{'a decoder' if decoder else 'which is not a decoder'}; "
                          f"leave it out.")
    run = generate_run.optimize_generation if decoder else infer_run.optimize_inference
    studies = _each(run, model, executors, report, given)
    if not per_machine_type:
        return studies[0]
    if report and studies:
        from hasten.report import compare as comparing
        from hasten.report.html import write

        first = studies[0].folder
        write(comparing.render_types_html(comparing.compare_types(studies)),
              first.parent / f"{first.name.rpartition('@')[0]}.machine-types.html")
    return studies


def optimize_training(recipe: str | Path, *, report: bool = True, executor: str = "local",
                      ray_address: str | None = None, ray_share: bool = False,
                      ray_shared_path: str | Path | None = None,
                      machine_type: str | None = None, per_machine_type: bool = False,
                      **options: Any) -> TrainStudy | list[TrainStudy]:
    """Run (or resume) a training study of a recipe file and return it; loading the recipe
    runs its code. `executor` and the Ray options are those of `optimize_inference` (a list
    of studies, one per machine type, with `per_machine_type`); `options` are those of
    hasten.train.run.optimize_training (steps, batch_size, max_drop, memory_budget_mb, ...)."""
    executors = executors_for(executor, ray_address, ray_share, ray_shared_path, machine_type,
                              per_machine_type, options.get("device", "cpu"))
    studies = _each(train_run.optimize_training, recipe, executors, report, options)
    return studies if per_machine_type else studies[0]


def executors_for(executor: str, ray_address: str | None = None, ray_share: bool = False,
                  ray_shared_path: str | Path | None = None, machine_type: str | None = None,
                  per_machine_type: bool = False, device: str = "cpu") -> list[Executor]:
    """Where a study's trials run: "local" (processes on this machine), or "ray": a Ray
    cluster at `ray_address` ("auto": the one this machine belongs to; default: a local one
    started here), on nodes of `machine_type` (needed when the cluster has several), each
    trial holding a whole node unless `ray_share`; one executor per machine type with
    `per_machine_type`. `ray_shared_path` is a folder mounted at the same path on every node
    (the study folder in it): artifacts are read there instead of shipped."""
    if executor == "local":
        given = [f"`{n}`" for n, v in (("ray_address", ray_address), ("ray_share", ray_share),
                                      ("ray_shared_path", ray_shared_path),
                                      ("machine_type", machine_type),
                                      ("per_machine_type", per_machine_type)) if v]
        if given:
            raise HastenError(f"{', '.join(given)} only apply to `executor` ray.")
        return [LocalExecutor()]
    if executor != "ray":
        raise HastenError(f"`executor` must be local or ray, not {executor!r}.")
    try:
        from hasten import ray_executor
    except ImportError as exc:
        raise HastenError("`executor` ray needs Ray: pip install 'hasten[ray]'.") from exc
    options = dict(share=ray_share, shared_path=ray_shared_path, device=device)
    if not per_machine_type:
        return [ray_executor.RayExecutor(ray_address, machine_type=machine_type, **options)]
    if machine_type:
        raise HastenError("Give `machine_type` or `per_machine_type`, not both.")
    ray_executor.connect(ray_address)
    types = ray_executor.cluster_types()
    return [ray_executor.RayExecutor(ray_address, machine_type=name, per_type=True,
                                     types=types, **options) for name in sorted(types)]


def _each(run: Callable, target: Any, executors: list[Executor], report: bool,
          options: dict) -> list:
    """Run one study per executor, at once when there are several (each machine type is its
    own set of nodes), each log line marked with its study's machine type."""
    writer = write_report if report else None
    if len(executors) == 1:
        return [run(target, report=writer, executor=executors[0], **options)]

    def one(executor: Executor):
        log, progress = options.get("log"), options.get("progress")
        mark = executor.suffix
        return run(target, report=writer, executor=executor, **{
            **options, "log": log and (lambda line: log(f"{mark}  {line}")),
            "progress": progress and (lambda what, done, total:
                                      progress(f"{mark}  {what}", done, total))})

    with ThreadPoolExecutor(len(executors)) as pool:
        futures = [pool.submit(one, e) for e in executors]
    return [f.result() for f in futures]


def open_study(folder: str | Path) -> Study | TrainStudy | GenerateStudy:
    """The inference, training or generation study a folder holds."""
    store_file = Path(folder) / "study.sqlite"
    if store_file.is_file():
        store = Store(Path(folder), readonly=True)
        try:
            kind = (store.meta("config") or {}).get("kind")
        finally:
            store.close()
        if kind == "train":
            return TrainStudy(folder)
        if kind == "generate":
            return GenerateStudy(folder)
    return Study(folder)


def compare(first: str | Path | Study, second: str | Path | Study) -> Comparison:
    """Two studies matched by candidate and workload point: ratios of their medians, and
    whether each difference exceeds both runs' own spread."""
    return compare_studies(first, second)


__all__ = ["compare", "executors_for", "open_study", "optimize_inference", "optimize_training",
           "write_report"]

"""The Python API that the command line and users call: the two studies, opening a study
folder, comparing two studies, and the HTML report. It sits above the studies and the views,
so that neither imports the other."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from hasten import pt2
from hasten.engine import Log, Progress
from hasten.errors import HastenError
from hasten.executors import Executor, LocalExecutor
from hasten.generate import run as generate_run
from hasten.generate.decoder import is_decoder
from hasten.generate.study import GenerateStudy
from hasten.infer import run as infer_run
from hasten.infer.study import Study
from hasten.models import absolute_spec
from hasten.options import (
    DECODER_OPTIONS,
    ENCODER_OPTIONS,
    RAY_OPTIONS,
    InferOptions,
    StudyOptions,
    TrainOptions,
    signature,
)
from hasten.report import write_report
from hasten.report.compare import Comparison
from hasten.report.compare import compare as compare_studies
from hasten.store import Meta, Store
from hasten.train import run as train_run
from hasten.train.study import TrainStudy


def optimize_inference(model: str | torch.nn.Module = "demo", *, example_inputs: Any = None,
                       report: bool = True, progress: Progress | None = None,
                       log: Log | None = None, **options: Any) -> Study | GenerateStudy | list:
    """Run (or resume) an inference study of `model`, a model spec or an nn.Module, and return
    it; a decoder language model (`demo-decoder`, or an hf: folder of a ...ForCausalLM, or
    `task` text-generation) gets the generation study (hasten.generate.run.optimize_generation).

    An nn.Module (one defined in a notebook too) is captured with torch.export on
    `example_inputs` (a tensor, or a tuple of the positional tensors of one call), its batch
    dimension dynamic, and saved in the study folder as a `pt2:` file that every trial loads;
    the same module and inputs resume the study. `data` may then also be a DataLoader (or any
    iterable of batches: the input tensors, then optionally a tensor of class labels), whose
    samples the fidelity check uses; for a text model, a list of texts.

    Every candidate runs in its own process; finished trials are kept in the study folder's
    database, so running the same call again resumes instead of starting over. With `report`,
    the study folder gets its HTML report when the study ends, also when its baseline failed.
    `options` are those of hasten.options.InferOptions, the flags of `hasten infer` by the
    same names (`budget_s` is `--budget`, in seconds). `executor` "ray" runs the trials on a
    Ray cluster (see `executors_for`); with `per_machine_type` one study per machine type of
    the cluster is run, at once, and returned as a list, with a page comparing them
    (NAME.machine-types.html beside their folders).
    """
    chosen = InferOptions.of(options, "optimize_inference")
    executors = executors_for(chosen)
    model = _inference_target(model, example_inputs, chosen)
    decoder = isinstance(model, str) and (model == generate_run.DEMO
                                          or is_decoder(model, chosen.task))
    wrong = chosen.changed(ENCODER_OPTIONS if decoder else DECODER_OPTIONS)
    if wrong:
        raise HastenError(f"`{wrong[0]}` does not apply to {model}, "
                          f"{'a decoder' if decoder else 'which is not a decoder'}; "
                          f"leave it out.")
    run = generate_run.optimize_generation if decoder else infer_run.optimize_inference
    studies = _each(run, model, chosen, executors, report, progress, log)
    if not chosen.per_machine_type:
        return studies[0]
    if report and studies:
        from hasten.report import compare as comparing
        from hasten.report.html import write

        first = studies[0].folder
        write(comparing.render_types_html(comparing.compare_types(studies)),
              first.parent / f"{first.name.rpartition('@')[0]}.machine-types.html")
    return studies


def _inference_target(model: Any, example_inputs: Any, options: InferOptions) -> str | pt2.Exported:
    """What an inference study runs on: a spec with its file made absolute (a Hub id is
    downloaded, or found in the cache, once, here), or an nn.Module captured by torch.export
    on its example inputs."""
    if isinstance(model, str):
        if example_inputs is not None:
            raise HastenError("`example_inputs` go with a model given as an nn.Module; a spec "
                              "brings its own (a py: factory's, or `input_shape`).")
        return absolute_spec(model)
    if not isinstance(model, torch.nn.Module):
        raise HastenError(f"`model` must be a model spec or a torch.nn.Module, not a "
                          f"{type(model).__name__}.")
    if example_inputs is None:
        raise HastenError("An nn.Module needs `example_inputs`, the inputs of one call (such as "
                          "example_inputs=(torch.randn(1, 3, 224, 224),)), for torch.export "
                          "to capture it.")
    given = options.changed(("task", "input_shape", "random_weights"))
    if given:
        raise HastenError(f"`{given[0]}` does not apply to an nn.Module; its example_inputs "
                          "say what it takes.")
    if options.executor == "ray" and options.ray_shared_path is None:
        raise HastenError("An nn.Module is saved in its study folder, which Ray nodes read only "
                          "through `ray_shared_path`; set it, or give the model as a spec.")
    return pt2.capture(model, example_inputs)


def optimize_training(recipe: str | Path, *, report: bool = True,
                      progress: Progress | None = None, log: Log | None = None,
                      **options: Any) -> TrainStudy | list[TrainStudy]:
    """Run (or resume) a training study of a recipe file and return it; loading the recipe
    runs its code. `options` are those of hasten.options.TrainOptions, the flags of `hasten
    train` by the same names; `executor` and the Ray options are those of
    `optimize_inference` (a list of studies, one per machine type, with
    `per_machine_type`)."""
    chosen = TrainOptions.of(options, "optimize_training")
    studies = _each(train_run.optimize_training, recipe, chosen, executors_for(chosen),
                    report, progress, log)
    return studies if chosen.per_machine_type else studies[0]


optimize_inference.__signature__ = signature(optimize_inference, InferOptions)
optimize_training.__signature__ = signature(optimize_training, TrainOptions)


def executors_for(options: StudyOptions) -> list[Executor]:
    """Where a study's trials run, by its options: `executor` "local" (processes on this
    machine), or "ray": a Ray cluster at `ray_address` ("auto": the one this machine belongs
    to; default: a local one started here), on nodes of `machine_type` (needed when the
    cluster has several), each trial holding a whole node unless `ray_share`; one executor
    per machine type with `per_machine_type`. `ray_shared_path` is a folder mounted at the
    same path on every node (the study folder in it): artifacts are read there instead of
    shipped."""
    o = options
    if o.executor == "local":
        given = [f"`{n}`" for n in o.changed(RAY_OPTIONS)]
        if given:
            raise HastenError(f"{', '.join(given)} only apply to `executor` ray.")
        return [LocalExecutor()]
    if o.executor != "ray":
        raise HastenError(f"`executor` must be local or ray, not {o.executor!r}.")
    try:
        from hasten import ray_executor
    except ImportError as exc:
        raise HastenError("`executor` ray needs Ray: pip install 'hasten[ray]'.") from exc
    common = dict(share=o.ray_share, shared_path=o.ray_shared_path, device=o.device)
    if not o.per_machine_type:
        return [ray_executor.RayExecutor(o.ray_address, machine_type=o.machine_type, **common)]
    if o.machine_type:
        raise HastenError("Give `machine_type` or `per_machine_type`, not both.")
    ray_executor.connect(o.ray_address)
    types = ray_executor.cluster_types()
    return [ray_executor.RayExecutor(o.ray_address, machine_type=name, per_type=True,
                                     types=types, **common) for name in sorted(types)]


def _each(run: Callable, target: Any, options: StudyOptions, executors: list[Executor],
          report: bool, progress: Progress | None, log: Log | None) -> list:
    """Run one study per executor, at once when there are several (each machine type is its
    own set of nodes), each log line marked with its study's machine type."""
    writer = write_report if report else None
    if len(executors) == 1:
        return [run(target, options, report=writer, executor=executors[0], progress=progress,
                    log=log)]

    def one(executor: Executor):
        mark = executor.suffix
        return run(target, options, report=writer, executor=executor,
                   log=log and (lambda line: log(f"{mark}  {line}")),
                   progress=progress and (lambda what, done, total:
                                          progress(f"{mark}  {what}", done, total)))

    with ThreadPoolExecutor(len(executors)) as pool:
        futures = [pool.submit(one, e) for e in executors]
    return [f.result() for f in futures]


def open_study(folder: str | Path) -> Study | TrainStudy | GenerateStudy:
    """The inference, training or generation study a folder holds."""
    store_file = Path(folder) / "study.sqlite"
    if store_file.is_file():
        store = Store(Path(folder), readonly=True)
        try:
            kind = (store.meta(Meta.CONFIG) or {}).get("kind")
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

"""Export a study's candidate: its artifact files plus a loading snippet that runs as is."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from hasten import folders
from hasten.data import tile, tokenize
from hasten.errors import HastenError
from hasten.infer import passes, runtimes
from hasten.infer.runtimes import Runner
from hasten.infer.settings import InferSettings
from hasten.infer.trial import build
from hasten.infer.workload import Workload
from hasten.machine import usable_cores
from hasten.models import LoadedModel, load_model

# What load.py (and load_runner) runs the exported model on: two short texts for a text model.
SAMPLE_TEXTS = ["hasten exported this model.", "It runs as is."]


def export_candidate(study, name: str, out: Path, trust_code: bool = False) -> Path:
    """Copy the candidate's artifact (or its recipe, for in-memory torch candidates) to `out`.
    A `py:` model is imported to export it: refused for a study this account did not make,
    unless `trust_code`."""
    row = next((c for c in study.candidates if c["name"] == name), None)
    if row is None or study.results.get(name, {}).get("status") != "ok":
        finished = sorted(n for n, r in study.results.items() if r["status"] == "ok")
        raise HastenError(f"{name} is not a finished candidate of {study.folder}; choose one of "
                          f"{', '.join(finished) or 'none yet'}.")
    folders.check_trusted(study.folder, study.settings.spec, "export it", trust_code)
    folders.claim(out, "export", "`out` folder")
    folders.clear(out)
    settings = study.settings
    recipe = {"candidate": name, "spec": settings.spec, "task": settings.task,
              "input_shape": settings.input_shape, "passes": row["passes"],
              "runtime": row["runtime"], "settings": row["settings"],
              "input_names": settings.model["input_names"],
              "random_weights": bool(settings.model.get("random_weights"))}
    if any(passes.REGISTRY[p].calibrates and not passes.REGISTRY[p].output_file
           for p in row["passes"]):
        # An in-memory candidate that calibrates is rebuilt on the study's own data.
        recipe.update(workload=settings.workload.to_dict(), max_drop=settings.max_drop)
    corpus = None
    if settings.model["kind"] == "text":
        # The corpus job as the study ran it fastest for this candidate.
        table_row = next(r for r in study.table() if r["candidate"] == name)
        job = study.corpus_job(table_row)
        corpus = {"batch_size": job["batch_size"] if job else
                  settings.workload.dataset_batch_size, "sort_by": "length",
                  "max_length": settings.workload.max_length,
                  # The study's figure against its naive job (the baseline unsorted at this
                  # batch size), for benchmarks/reproduce.py --point corpus.
                  "gain": job["gain"] if job else None,
                  "naive_batch_size": settings.workload.dataset_batch_size}
        recipe["corpus"] = corpus
    # The speedups the study confirmed for this candidate, so the export can be checked
    # against them outside hasten (benchmarks/reproduce.py).
    recipe["confirmed"] = {
        point: {k: c[k] for k in ("speedup", "p50") if k in c}
        for point in study.confirmation.get("results", {})
        if (c := study.confirmed(point).get(name))}
    written = ["candidate.json", "load.py"]
    folders.write_whole(out / "candidate.json", json.dumps(recipe, indent=2))
    last = passes.REGISTRY[row["passes"][-1]] if row["passes"] else None
    model = load_model(settings.spec, settings.task, settings.input_shape, with_weights=False)
    image = settings.workload.image
    if image:  # file artifacts were built on the study's images, at their size
        model.example_inputs = {model.input_names[0]: torch.zeros(1, image["channels"],
                                                                  *image["size"])}
    if model.tokenizer is not None:
        written.append("tokenizer")
        folders.note_files(out, written)
        model.tokenizer.save_pretrained(out / "tokenizer")
    if last is not None and last.output_file:
        source = study.folder / "artifacts" / "+".join(row["passes"])
        files = [f for f in source.iterdir() if f.is_file()]
        folders.note_files(out, [*written, *(f.name for f in files)])
        for f in files:
            _copy_whole(f, out / f.name)
        snippet = _file_snippet(row["runtime"], row["settings"], last.output_file, model,
                                corpus)
    elif model.onnx_path is not None:
        folders.note_files(out, [*written, "model.onnx"])
        _copy_whole(model.onnx_path, out / "model.onnx")
        snippet = _file_snippet(row["runtime"], row["settings"], "model.onnx", model, corpus)
    else:
        snippet = _torch_snippet(name, corpus)
    folders.note_files(out, written)
    folders.write_whole(out / "load.py", snippet)
    return out


def _copy_whole(source: Path, target: Path) -> None:
    """Copy a file under a temporary name beside its target, then rename it into place."""
    partial = target.with_name(f".{target.name}.partial")
    shutil.copy2(source, partial)
    partial.replace(target)


def _inputs_code(model: LoadedModel) -> tuple[str, str]:
    """The import and the lines that build two example inputs as NumPy arrays."""
    if model.kind == "text":
        return "from transformers import AutoTokenizer\n", (
            "tokenizer = AutoTokenizer.from_pretrained(here / 'tokenizer')\n"
            f"encoded = tokenizer({SAMPLE_TEXTS!r}, padding=True, return_tensors='np')\n"
            f"input_names = {model.input_names!r}\n"
            "inputs = [encoded[name] for name in input_names]\n"
        )
    shapes = [list(t.shape[1:]) for t in model.example_inputs.values()]
    return "import numpy as np\n", (
        f"inputs = [np.random.rand(2, *shape).astype(np.float32) for shape in {shapes!r}]\n"
    )


def _file_snippet(runtime: str, settings: dict, file: str, model: LoadedModel,
                  corpus: dict | None) -> str:
    """A load.py that defines run(inputs) -> outputs for the artifact file with the runtime
    settings the study measured (the runtime writes those lines), and runs it."""
    entry = runtimes.REGISTRY[runtime]
    snippet = entry.snippet
    if snippet is None:
        raise HastenError(f"The runtime {runtime} has no loading snippet for a file artifact, "
                          f"so {file} cannot be exported with it.")
    imports, lines = snippet(settings, file, usable_cores())
    call = "run_corpus" if entry.corpus_settings(settings) != settings else "run"
    input_import, input_lines = _inputs_code(model)
    modules = {line + "\n" for line in (imports + input_import).splitlines()}
    return ("from pathlib import Path\n\n" + "".join(sorted(modules))
            + "\nhere = Path(__file__).parent\n" + input_lines
            + "".join(line + "\n" for line in lines) + _corpus_code(corpus, "np", call)
            + "\nprint(run(inputs).shape)\n")


def _corpus_code(corpus: dict | None, tensors: str, call: str = "run") -> str:
    """For a text model: embed_corpus(), the corpus job the way the study measured it fastest
    (sorted by length, its batch size, each batch padded to its longest text, through `call`),
    and one call."""
    if corpus is None:
        return ""
    return (
        "\n\n"
        f"def embed_corpus(texts, batch_size={corpus['batch_size']}):\n"
        '    """Every text through the model, sorted by length so that each batch holds texts\n'
        "    of similar length, each padded to its longest text; the outputs come back in\n"
        '    the order of `texts`."""\n'
        "    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, "
        f"max_length={corpus['max_length']})['input_ids']]\n"
        "    order = sorted(range(len(texts)), key=lengths.__getitem__)\n"
        "    outputs = [None] * len(texts)\n"
        "    for start in range(0, len(order), batch_size):\n"
        "        chunk = order[start:start + batch_size]\n"
        "        encoded = tokenizer([texts[i] for i in chunk], padding=True, truncation=True,\n"
        f"                            max_length={corpus['max_length']}, "
        f"return_tensors={tensors!r})\n"
        f"        for i, output in zip(chunk, {call}([encoded[n] for n in input_names])):\n"
        "            outputs[i] = output\n"
        "    return outputs\n\n\n"
        "print(len(embed_corpus(['A short text.', 'hasten sorts a corpus by length first.',"
        " 'It runs as is.'])), 'texts embedded')\n"
    )


def _torch_snippet(name: str, corpus: dict | None) -> str:
    text = corpus is not None
    return (
        f'"""Rebuild the candidate {name} (a PyTorch module in memory) and run it once."""\n'
        + ("import json\n" if text else "")
        + "from pathlib import Path\n\n"
        + ("from transformers import AutoTokenizer\n\n" if text else "")
        + "from hasten.infer.export import load_runner\n\n"
        "here = Path(__file__).parent\n"
        "run, inputs = load_runner(here)\n"
        + ("tokenizer = AutoTokenizer.from_pretrained(here / 'tokenizer')\n"
           "input_names = json.loads((here / 'candidate.json').read_text())['input_names']\n"
           if text else "")
        + _corpus_code(corpus, "pt")
        + "print(run(inputs).shape)\n"
    )


def load_runner(folder: Path) -> tuple[Runner, list[torch.Tensor]]:
    """Rebuild an exported candidate from its candidate.json with the chain the study applied
    (hasten.infer.trial.build); return its runner and two example inputs."""
    recipe = json.loads((Path(folder) / "candidate.json").read_text())
    # Without the study's workload (only calibrating chains carry it), the sample inputs the
    # passes see come from the two texts of load.py (or the model's example inputs).
    workload = (Workload.from_dict(recipe["workload"]) if "workload" in recipe else
                Workload(texts=list(SAMPLE_TEXTS), labels=None, batch_sizes=[2],
                         seq_lengths=[], eval_samples=2, dataset_batch_size=2, max_length=128))
    settings = InferSettings(
        device="cpu", max_drop=recipe.get("max_drop", 0.01), quick=True,
        threads=usable_cores(), point_s=1.0, baseline=recipe["candidate"],
        model={"input_names": recipe["input_names"]}, spec=recipe["spec"], task=recipe["task"],
        input_shape=recipe["input_shape"], workload=workload)
    with tempfile.TemporaryDirectory() as study:
        model, _, artifact = build(Path(study), settings, tuple(recipe["passes"]), {})
    run = runtimes.REGISTRY[recipe["runtime"]].build(artifact, recipe["settings"],
                                                     settings.threads, settings.device)
    inputs = (tokenize(model, SAMPLE_TEXTS, None, workload.max_length)
              if model.kind == "text" else tile(model, 2))
    return run, inputs

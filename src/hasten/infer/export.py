"""Export a study's candidate: its artifact files plus a loading snippet that runs as is."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from hasten import folders
from hasten.errors import HastenError
from hasten.infer import passes, runtimes
from hasten.infer.passes import export_shapes
from hasten.infer.runtimes import Runner
from hasten.infer.settings import InferSettings
from hasten.infer.trial import build
from hasten.infer.workload import Workload, point_inputs
from hasten.kinds import LoadedModel
from hasten.machine import usable_cores
from hasten.models import load_model

# What load.py (and load_runner) runs the exported model on: two short texts for a text model.
SAMPLE_TEXTS = ["hasten exported this model.", "It runs as is."]


def export_candidate(study, name: str, out: Path, trust_code: bool = False) -> Path:
    """Copy the candidate's artifact to `out` with a load.py that runs it without hasten (for
    a PyTorch model in memory: the float model and the lines that rebuild the candidate, see
    _torch_export). A `py:` model is imported to export it: refused for a study this account
    did not make, unless `trust_code`."""
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
    beside = model.beside_export()
    written += list(beside)
    folders.note_files(out, written)
    for file, write in beside.items():
        write(out / file)
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
        files, snippet = _torch_export(study, row, out, corpus)
        written += files
    folders.note_files(out, written)
    folders.write_whole(out / "load.py", snippet)
    return out


def _copy_whole(source: Path, target: Path) -> None:
    """Copy a file under a temporary name beside its target, then rename it into place."""
    partial = target.with_name(f".{target.name}.partial")
    shutil.copy2(source, partial)
    partial.replace(target)


def _write_whole(out: Path, name: str, write) -> None:
    """Have `write(path)` write `name` (a file or a folder) in a temporary folder inside
    `out`, then rename it into place."""
    with tempfile.TemporaryDirectory(dir=out, prefix=".partial-") as partial:
        write(Path(partial) / name)
        (Path(partial) / name).replace(out / name)


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
    input_import, input_lines = model.inputs_code(SAMPLE_TEXTS)
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


# The transformers class that loads a Hugging Face model for each task.
AUTO_CLASSES = {"feature-extraction": "AutoModel",
                "sequence-classification": "AutoModelForSequenceClassification",
                "image-classification": "AutoModelForImageClassification",
                "image-feature-extraction": "AutoModel"}


def _torch_export(study, row: dict, out: Path, corpus: dict | None) -> tuple[list[str], str]:
    """Write what rebuilds an in-memory PyTorch candidate without hasten: the float model
    (save_pretrained, or a `py:` model's file and its weights in safetensors) and the passes'
    lines, or the whole candidate saved with torch.export. Returns the files written and
    load.py."""
    settings = study.settings
    chain = tuple(row["passes"])
    runtime = runtimes.REGISTRY[row["runtime"]]
    if runtime.module_snippet is None:
        raise HastenError(f"The runtime {row['runtime']} writes no load.py lines for a PyTorch "
                          "module, so this candidate cannot be exported.")
    # The candidate as a trial builds it: what its runner reads (input dtype, autocast,
    # layout), and the module itself where it is saved whole.
    with tempfile.TemporaryDirectory() as scratch:
        built, workload, artifact = build(Path(scratch), settings, chain, {})
    sample = point_inputs(built, workload, built.point(2, 16))[0]
    names = settings.model["input_names"]
    lines = [f"input_names = {names!r}"] if built.hugging_face else []
    module, artifact.module = artifact.module, None  # the runner's facts are what stay
    # Each pass's own load.py lines (its `code`), else the candidate saved whole.
    if all(passes.REGISTRY[p].code is not None for p in chain):
        module = built = None  # load.py rebuilds it from the float model
        files, imports, forward = _float_model(settings, out, sample, lines)
        for p in chain:
            imports += passes.REGISTRY[p].code[0]
            lines += passes.REGISTRY[p].code[1]
    else:
        files, imports, forward = _saved_whole(module, built, out, sample, lines)
    if settings.device != "cpu":
        lines.append(f"model = model.to({settings.device!r})")
    run_imports, run_lines = runtime.module_snippet(
        artifact, row["settings"], usable_cores(), settings.device,
        any(t.is_floating_point() for t in sample))
    if corpus is not None:
        imports += "from transformers import AutoTokenizer\n"
        inputs = ["tokenizer = AutoTokenizer.from_pretrained(here / 'tokenizer')",
                  f"encoded = tokenizer({SAMPLE_TEXTS!r}, padding=True, return_tensors='pt')",
                  "inputs = [encoded[name] for name in input_names]"]
    else:
        shapes = [list(t.shape[1:]) for t in sample]
        inputs = [f"inputs = [torch.rand(2, *shape) for shape in {shapes!r}]"]
    code = [*lines, *forward, *run_lines, "", "", *inputs]
    return files, (
        f'"""Rebuild the candidate {row["name"]} without hasten, from the files beside\n'
        'this file, and run it once."""\n'
        + _import_block("from pathlib import Path\n" + imports + run_imports)
        + "\nhere = Path(__file__).parent\n" + "".join(line + "\n" for line in code)
        + _corpus_code(corpus, "pt") + "\nprint(run(inputs).shape)\n")


def _import_block(imports: str) -> str:
    """Import lines, each once, the standard library's first: in each group `import` lines,
    then `from` lines with the names imported from one module on one line, each sorted."""
    groups: list[tuple[set, dict]] = [(set(), {}), (set(), {})]
    for line in imports.splitlines():
        module = line.split()[1]
        plain, names = groups[module.partition(".")[0] not in sys.stdlib_module_names]
        if line.startswith("from "):
            imported = line.partition(" import ")[2]
            names.setdefault(module, set()).update(n.strip() for n in imported.split(","))
        else:
            plain.add(line)
    blocks = []
    for plain, names in groups:
        froms = [f"from {m} import {', '.join(sorted(names[m]))}" for m in sorted(names)]
        blocks.append("".join(line + "\n" for line in [*sorted(plain), *froms]))
    return "\n".join(block for block in blocks if block)


def _float_model(settings, out: Path, sample: list[torch.Tensor], lines: list[str]
                 ) -> tuple[list[str], str, list[str]]:
    """Save the study's float model beside load.py: a Hugging Face model with
    save_pretrained (safetensors), a `py:` model's weights in safetensors with a copy of its
    file, a `pt2:` program as its file. Adds the lines that load it as `model` to `lines`;
    returns the files written, the imports, and the lines that define forward(*inputs), the
    one tensor the study measured."""
    from safetensors.torch import save_model

    model = load_model(settings.spec, settings.task, settings.input_shape,
                       random_weights=settings.model.get("random_weights", False))
    inner = model.module.model  # the user's model inside the OutputAdapter
    names = settings.model["input_names"]
    with torch.inference_mode():
        output = (inner(**dict(zip(names, sample, strict=True))) if model.hugging_face
                  else inner(*sample))
    pick = _pick(output, model.module.output_key)
    if model.hugging_face:
        folders.note_files(out, ["model"])
        _write_whole(out, "model", inner.save_pretrained)
        auto = AUTO_CLASSES[model.task]
        lines.append(f"model = {auto}.from_pretrained(here / 'model')")
        return ["model"], f"import torch\nfrom transformers import {auto}\n", [
            "", "", "def forward(*inputs):",
            f"    return model(**dict(zip(input_names, inputs))){pick}", "", ""]
    if settings.spec.startswith("pt2:"):
        # A program captured by torch.export (an nn.Module given to the API): the file the
        # study measured, which hasten checked before it loaded it (hasten.pt2).
        folders.note_files(out, ["model.pt2"])
        _copy_whole(Path(settings.spec.removeprefix("pt2:")), out / "model.pt2")
        lines.append("model = torch.export.load(here / 'model.pt2').module()")
        forward = ["forward = model"] if not pick else [
            "", "", "def forward(*inputs):", f"    return model(*inputs){pick}", "", ""]
        return ["model.pt2"], "import torch\n", forward
    path, factory = settings.spec.removeprefix("py:").rsplit(":", 1)
    code = Path(path).name if Path(path).name != "load.py" else "model_code.py"
    folders.note_files(out, [code, "model.safetensors"])
    _copy_whole(Path(path), out / code)
    _write_whole(out, "model.safetensors", lambda path: save_model(inner, str(path)))
    lines += [f"# The model's code: {factory}() in {code}, a copy of {path}.",
              f"source = importlib.util.spec_from_file_location({Path(code).stem!r}, "
              f"here / {code!r})",
              "code = importlib.util.module_from_spec(source)",
              "source.loader.exec_module(code)",
              f"made = code.{factory}()",
              "model = (made[0] if isinstance(made, tuple) else made).eval()",
              "load_model(model, here / 'model.safetensors')"]
    imports = "import importlib.util\nimport torch\nfrom safetensors.torch import load_model\n"
    if not pick:
        return [code, "model.safetensors"], imports, ["forward = model"]
    return [code, "model.safetensors"], imports, [
        "", "", "def forward(*inputs):", f"    return model(*inputs){pick}", "", ""]


def _pick(output, key: str | None) -> str:
    """The code that takes from a model's output the tensor hasten measures (as
    hasten.models.first_tensor does): '' for a tensor, else an attribute or an index."""
    if isinstance(output, torch.Tensor):
        return ""
    if key is not None and getattr(output, key, None) is not None:
        return f".{key}"
    if isinstance(output, dict):
        return f"[{next(k for k, v in output.items() if isinstance(v, torch.Tensor))!r}]"
    items = output.to_tuple() if hasattr(output, "to_tuple") else output
    return f"[{next(i for i, v in enumerate(items) if isinstance(v, torch.Tensor))}]"


def _saved_whole(module: torch.nn.Module, model: LoadedModel, out: Path,
                 sample: list[torch.Tensor], lines: list[str]
                 ) -> tuple[list[str], str, list[str]]:
    """Save a built candidate whole with torch.export (its graph and its tensors, no pickle:
    a candidate whose tensors torch.export would pickle is refused), for a chain with a pass
    that has no plain lines (PT2E int8: calibrated, its float layers chosen on the study's
    data). Adds the lines that load it as `model` to `lines`; returns the files written, the
    imports and the line that defines `forward`."""
    auto = tuple({axis: torch.export.Dim.AUTO for axis in shape}
                 for shape in export_shapes(model))
    with torch.no_grad():
        program = torch.export.export(module, tuple(sample), dynamic_shapes=auto)
    tensors = [*program.state_dict.values(), *program.constants.values()]
    if any(type(t) not in (torch.Tensor, torch.nn.Parameter) for t in tensors):
        raise HastenError("This candidate holds tensors that torch.export would save with "
                          "pickle, so hasten does not export it; export another candidate.")
    program.example_inputs = None  # torch.export would pickle them
    folders.note_files(out, ["model.pt2"])
    _write_whole(out, "model.pt2", lambda path: torch.export.save(program, path))
    imports = "import torch\n"
    lines.append("# The candidate as the study built it, saved with torch.export (its graph "
                 "and weights).")
    if any("quantized_decomposed" in str(node.target) for node in program.graph.nodes):
        imports += "import torchao.quantization.pt2e  # noqa: F401 (the int8 ops the graph calls)\n"
    lines.append("model = torch.export.load(here / 'model.pt2').module()")
    return ["model.pt2"], imports, ["forward = model"]


def load_runner(folder: Path) -> tuple[Runner, list[torch.Tensor]]:
    """Rebuild an exported candidate from its candidate.json with the chain the study applied
    (hasten.infer.trial.build); return its runner and two example inputs. hasten's own runner
    for an export, which its load.py does without."""
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
    inputs = model.example_batch(SAMPLE_TEXTS, len(SAMPLE_TEXTS), None, workload.max_length)
    return run, inputs

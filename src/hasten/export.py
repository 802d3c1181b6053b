"""Export a study's candidate: its artifact files plus a loading snippet that runs as is."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from hasten import passes, runtimes
from hasten.machine import usable_cores
from hasten.models import LoadedModel, load_model
from hasten.passes import Artifact, PassContext
from hasten.workload import Workload, tile, tokenize

ORT_LEVELS = {"disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
              "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def export_candidate(study, name: str, out: Path) -> Path:
    """Copy the candidate's artifact (or its recipe, for in-memory torch candidates) to `out`."""
    from hasten.errors import HastenError

    row = next((c for c in study.candidates if c["name"] == name), None)
    if row is None or study.results.get(name, {}).get("status") != "ok":
        finished = sorted(n for n, r in study.results.items() if r["status"] == "ok")
        raise HastenError(f"{name} is not a finished candidate of {study.folder}; choose one of "
                          f"{', '.join(finished) or 'none yet'}.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HastenError(f"The export folder {out} cannot be created ({exc.strerror}); choose "
                          "an --out folder you can write to.") from exc
    config = study.config
    recipe = {"candidate": name, "spec": config["spec"], "task": config["task"],
              "input_shape": config["input_shape"], "passes": row["passes"],
              "runtime": row["runtime"], "settings": row["settings"],
              "input_names": config["model"]["input_names"]}
    if any(passes.REGISTRY[p].calibrates and not passes.REGISTRY[p].output_file
           for p in row["passes"]):
        # An in-memory candidate that calibrates is rebuilt on the study's own data.
        recipe.update(workload=config["workload"], max_drop=config["max_drop"])
    (out / "candidate.json").write_text(json.dumps(recipe, indent=2))
    last = passes.REGISTRY[row["passes"][-1]] if row["passes"] else None
    model = load_model(config["spec"], config["task"], config["input_shape"], with_weights=False)
    image = config["workload"].get("image")
    if image:  # file artifacts were built on the study's images, at their size
        model.example_inputs = {model.input_names[0]: torch.zeros(1, image["channels"],
                                                                  *image["size"])}
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(out / "tokenizer")
    if last is not None and last.output_file:
        source = study.folder / "artifacts" / "+".join(row["passes"])
        for f in source.iterdir():
            shutil.copy2(f, out / f.name)
        snippet = _file_snippet(row["runtime"], row["settings"], last.output_file, model)
    elif model.onnx_path is not None:
        shutil.copy2(model.onnx_path, out / "model.onnx")
        snippet = _file_snippet(row["runtime"], row["settings"], "model.onnx", model)
    else:
        snippet = _torch_snippet(name)
    (out / "load.py").write_text(snippet)
    return out


def _inputs_code(model: LoadedModel) -> tuple[str, str]:
    """The import and the lines that build two example inputs as NumPy arrays."""
    if model.kind == "text":
        return "from transformers import AutoTokenizer\n", (
            "tokenizer = AutoTokenizer.from_pretrained(here / 'tokenizer')\n"
            "encoded = tokenizer(['hasten exported this model.', 'It runs as is.'],"
            " padding=True, return_tensors='np')\n"
            f"inputs = [encoded[name] for name in {model.input_names!r}]\n"
        )
    shapes = [list(t.shape[1:]) for t in model.example_inputs.values()]
    return "import numpy as np\n", (
        f"inputs = [np.random.rand(2, *shape).astype(np.float32) for shape in {shapes!r}]\n"
    )


def _file_snippet(runtime: str, settings: dict, file: str, model: LoadedModel) -> str:
    threads = usable_cores()
    if runtime == "ort":
        level = ORT_LEVELS[settings.get("level", "all")]
        imports = "import onnxruntime as ort\n"
        body = (
            "options = ort.SessionOptions()\n"
            f"options.graph_optimization_level = ort.GraphOptimizationLevel.{level}\n"
            f"options.intra_op_num_threads = {threads}\n"
            f"session = ort.InferenceSession(str(here / {file!r}), options,"
            " providers=['CPUExecutionProvider'])\n"
            "feeds = {i.name: x for i, x in zip(session.get_inputs(), inputs)}\n"
            "print(session.run(None, feeds)[0].shape)\n"
        )
    elif runtime == "openvino":
        imports = "import openvino as ov\n"
        static = settings.get("shapes") == "static"
        body = (
            "core = ov.Core()\n"
            f"model = core.read_model(str(here / {file!r}))\n"
            + ("# Static shapes: compile once per input shape (a fixed batch and length, or\n"
               "# one per length bucket of a corpus), as the study measured.\n"
               "model.reshape({i: x.shape for i, x in enumerate(inputs)})\n" if static else "")
            + "compiled = core.compile_model(model, 'CPU', "
            f"{{'INFERENCE_PRECISION_HINT': {settings.get('precision', 'f32')!r}, "
            f"'INFERENCE_NUM_THREADS': {threads}, 'PERFORMANCE_HINT': 'LATENCY'}})\n"
            "print(compiled(inputs)[compiled.output(0)].shape)\n"
        )
    else:
        imports = "import torch\n"
        body = (
            f"torch.set_num_threads({threads})\n"
            f"module = torch.jit.load(str(here / {file!r}))\n"
            "with torch.inference_mode():\n"
            "    print(module(*[torch.from_numpy(x) for x in inputs]).shape)\n"
        )
    input_import, input_lines = _inputs_code(model)
    return ("from pathlib import Path\n\n" + "".join(sorted({imports, input_import}))
            + "\nhere = Path(__file__).parent\n" + input_lines + body)


def _torch_snippet(name: str) -> str:
    return (
        f'"""Rebuild the candidate {name} (a PyTorch module in memory) and run it once."""\n'
        "from pathlib import Path\n\n"
        "from hasten.export import load_runner\n\n"
        "run, inputs = load_runner(Path(__file__).parent)\n"
        "print(run(inputs).shape)\n"
    )


def load_runner(folder: Path):
    """Rebuild an exported candidate from its candidate.json; return its runner and inputs."""
    recipe = json.loads((Path(folder) / "candidate.json").read_text())
    model = load_model(recipe["spec"], recipe["task"], recipe["input_shape"])
    artifact = Artifact("torch", module=model.module)
    sample = (tokenize(model, ["hasten exported this model.", "It runs as is."], None, 128)
              if model.kind == "text" else tile(model, 2))
    workload = Workload.from_dict(recipe["workload"]) if "workload" in recipe else None
    with tempfile.TemporaryDirectory() as tmp:
        for name in recipe["passes"]:
            context = PassContext(model, sample, Path(tmp), workload=workload,
                                  max_drop=recipe.get("max_drop", 0.01))
            artifact = passes.REGISTRY[name].apply(artifact, context)
    run = runtimes.REGISTRY[recipe["runtime"]].build(artifact, recipe["settings"],
                                                     usable_cores(), "cpu")
    return run, sample

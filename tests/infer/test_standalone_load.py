"""An exported load.py runs without hasten: each runtime's and each PyTorch form's load.py runs
in a child process where hasten cannot be imported, and its model gives what hasten's own
runner gives on the same inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import hasten
from hasten.infer import menu, runtimes
from hasten.infer.export import load_runner
from hasten.infer.passes import Artifact
from hasten.infer.study import Study
from hasten.store import Store

# Runs load.py (argv[1]) as a user would, with every import of hasten refused (it is installed
# in this environment, editable, so leaving it off the path is not enough), then saves the
# inputs load.py built and the output of its run() on them (argv[2]).
WITHOUT_HASTEN = """
import importlib.abc, runpy, sys
import numpy as np

class NoHasten(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] == 'hasten':
            raise ImportError(f'{name} is not importable here')

sys.meta_path.insert(0, NoHasten())
loaded = runpy.run_path(sys.argv[1])
output = loaded['run'](loaded['inputs'])
as_array = lambda x: x.detach().cpu().numpy() if hasattr(x, 'detach') else np.asarray(x)
if hasattr(output, 'detach'):
    output = output.detach().float()
np.savez(sys.argv[2], output=as_array(output),
         **{f'input_{i}': as_array(x) for i, x in enumerate(loaded['inputs'])})
assert not [m for m in sys.modules if m.partition('.')[0] == 'hasten']
"""

# Candidates the quick tiny study did not run, added to a copy of it as finished (the export
# builds them itself): chain, runtime, settings. torchao's int8 runs eager here, to spare the
# test a second torch.compile (PT2E's covers the compile runtime's lines).
ADDED = {
    "torch/eager/attention-eager": (("attention_eager",), "eager", {}),
    "torch/eager/torchao-int8-dynamic": (("torchao_int8_dynamic",), "eager", {}),
    "torch/compile/int8-static-pt2e": (("pt2e_int8_x86",), "compile", {"freezing": True}),
}
# The artifact file each file-loading runtime reads, and its kind.
FILES = {"torchscript": ("model.pt", "torchscript"), "ort": ("model.onnx", "onnx"),
         "openvino": ("model.xml", "openvino")}


def _add_finished(folder: Path, added: dict[str, tuple]) -> None:
    """Add candidates (name: chain, runtime, settings) to a study's store as finished and
    passing."""
    store = Store(folder)
    baseline = store.results()[menu.BASELINE]
    for i, (name, (chain, runtime, settings)) in enumerate(added.items()):
        store.add_candidate(100 + i, name, list(chain), runtime, settings, None)
        store.put_result(name, "ok", fidelity=baseline["fidelity"], passed=True)
    store.close()


@pytest.fixture(scope="module")
def text_study(tiny_study, tmp_path_factory) -> Study:
    """The tiny BERT study, with the PyTorch forms its quick run left out added."""
    folder = tmp_path_factory.mktemp("standalone") / "study"
    shutil.copytree(tiny_study.folder, folder)
    _add_finished(folder, ADDED)
    return Study(folder)


@pytest.fixture(scope="module")
def cnn_study(cnn_spec, tmp_path_factory) -> Study:
    """A `py:` model's study (the tiny CNN, a tensor input): its baseline run, bf16 weights
    with channels-last added."""
    out = tmp_path_factory.mktemp("standalone-cnn")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(menu, "CANDIDATES", tuple(c for c in menu.CANDIDATES
                                                  if c.name == menu.BASELINE))
        study = hasten.optimize_inference(cnn_spec, quick=True, batch_sizes=[1, 2], out=out)
    _add_finished(study.folder, {"torch/eager/bf16-channels-last": (
        ("bf16_weights", "channels_last"), "eager", {})})
    return Study(study.folder)


def _pickled(archive_path: Path) -> list[str]:
    """What a torch.export archive holds in pickle: its weights and constants marked so, and
    sample inputs."""
    found = []
    with zipfile.ZipFile(archive_path) as archive:
        for name in archive.namelist():
            if name.endswith("_config.json"):
                config = json.loads(archive.read(name))["config"]
                found += [key for key, payload in config.items() if payload.get("use_pickle")]
            elif "/sample_inputs/" in name and archive.read(name):
                found.append(name)
    return found


def _run_without_hasten(out: Path) -> tuple[list[torch.Tensor], torch.Tensor]:
    """load.py's inputs and its run()'s output, from a child process without hasten."""
    saved = out.parent / "outputs.npz"
    proc = subprocess.run([sys.executable, "-c", WITHOUT_HASTEN, str(out / "load.py"),
                           str(saved)], capture_output=True, text=True, cwd=out.parent,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(saved) as data:
        inputs = [torch.from_numpy(data[f"input_{i}"]) for i in range(len(data.files) - 1)]
        return inputs, torch.from_numpy(data["output"])


def _hasten_runner(out: Path):
    """hasten's own runner for the export: its runtime on the exported file, or the candidate
    rebuilt through hasten's passes (load_runner) for a PyTorch model in memory."""
    recipe = json.loads((out / "candidate.json").read_text())
    if recipe["runtime"] not in FILES:
        return load_runner(out)[0]
    file, kind = FILES[recipe["runtime"]]
    return runtimes.REGISTRY[recipe["runtime"]].build(Artifact(kind, path=out / file),
                                                      recipe["settings"], 2, "cpu")


@pytest.mark.parametrize(
    ("study", "candidate", "tolerance"),
    [
        ("text", "torch/eager/fp32", 1e-5),
        ("text", "torch/eager/bf16-autocast", 2e-2),
        ("text", "torch/eager/bf16-weights", 2e-2),
        ("text", "torch/eager/int8-dynamic", 1e-2),
        ("text", "torch/eager/attention-eager", 1e-5),
        ("text", "torch/eager/torchao-int8-dynamic", 1e-2),
        ("text", "torch/compile/int8-static-pt2e", 1e-2),
        ("text", "torchscript/jit/trace-frozen", 1e-5),
        ("text", "onnx/ort/all", 1e-5),
        ("text", "onnx/openvino/f32", 1e-4),
        ("cnn", "torch/eager/fp32", 1e-5),
        ("cnn", "torch/eager/bf16-channels-last", 2e-2),
    ],
)
def test_load_py_runs_without_hasten_and_matches_its_runner(request, tmp_path, study,
                                                            candidate, tolerance):
    chosen = request.getfixturevalue(f"{study}_study")
    out = chosen.export(tmp_path / "out", candidate=candidate)
    code = (out / "load.py").read_text()
    assert "import hasten" not in code and "from hasten" not in code
    assert not [*out.rglob("*.pkl"), *out.rglob("pytorch_model*.bin")]  # no pickle
    if (out / "model.pt2").is_file():
        assert not _pickled(out / "model.pt2")
    inputs, output = _run_without_hasten(out)
    with torch.inference_mode():
        expected = _hasten_runner(out)(inputs)
    expected = torch.as_tensor(expected).float()
    assert output.shape == expected.shape
    torch.testing.assert_close(output, expected, rtol=tolerance, atol=tolerance)


def test_the_pytorch_runtimes_write_their_runner_into_load_py():
    # On the CPU: float inputs cast to the weights' dtype and made channels-last, as the
    # runner feeds them.
    half = Artifact("torch", dtype=torch.bfloat16, channels_last=True)
    imports, lines = runtimes.REGISTRY["eager"].module_snippet(half, {}, 2, "cpu", True)
    scope = {"forward": lambda *inputs: inputs}
    exec(imports + "\n".join(lines), scope)
    (x,) = scope["run"]([torch.rand(1, 3, 4, 4)])
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)
    # On a GPU (which this test does not need): the inputs moved there, its autocast, and
    # torch.compile with the mode and freezing measured.
    fp16 = Artifact("torch", autocast=torch.float16)
    imports, lines = runtimes.REGISTRY["compile"].module_snippet(
        fp16, {"mode": "max-autotune", "freezing": True}, 4, "cuda", False)
    code = imports + "\n".join(lines)
    compile(code, "load.py", "exec")
    assert "inputs = [x.to('cuda') for x in inputs]" in code
    assert "torch.compile(forward, mode='max-autotune')" in code
    assert ("with torch.inference_mode(), torch.autocast('cuda', dtype=torch.float16), "
            "inductor_config.patch(freezing=True):") in code

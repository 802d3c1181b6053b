"""Exporting a finished study's candidate: files plus a load.py that runs as is."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hasten
from hasten.errors import HastenError
from hasten.infer import menu, runtimes
from hasten.infer.study import Study
from hasten.store import Store

SHAPE = re.compile(r"^(torch\.Size\(\[2, \d+, 32\]\)|\(2, \d+, 32\))$")


def run_load(folder: Path) -> str:
    proc = subprocess.run([sys.executable, str(folder / "load.py")], capture_output=True,
                          text=True, cwd=folder.parent, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_export_the_best_candidate_from_the_command_line(tiny_study, tmp_path):
    best = tiny_study.study.best("latency")["candidate"]
    out = tmp_path / "fast"
    proc = subprocess.run([str(Path(sys.executable).with_name("hasten")), "export",
                           str(tiny_study.folder), "--objective", "latency", "--to", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Wrote" in proc.stdout and "load.py" in proc.stdout
    recipe = json.loads((out / "candidate.json").read_text())
    assert recipe["candidate"] == best
    assert recipe["input_names"] == ["input_ids", "token_type_ids", "attention_mask"]
    assert (out / "tokenizer").is_dir()
    assert SHAPE.match(run_load(out))


@pytest.mark.parametrize(
    ("candidate", "files"),
    [
        ("torch/eager/fp32", set()),
        ("torchscript/jit/trace-frozen", {"model.pt"}),
        ("onnx-fused/ort/all", {"model.onnx"}),
        ("onnx/openvino/f32", {"model.xml", "model.bin"}),
    ],
)
def test_every_kind_of_artifact_loads(tiny_study, tmp_path, candidate, files):
    out = tiny_study.study.export(tmp_path / "out", candidate=candidate)
    assert out == tmp_path / "out"
    assert files <= {p.name for p in out.iterdir()}
    assert json.loads((out / "candidate.json").read_text())["candidate"] == candidate
    assert SHAPE.match(run_load(out)), candidate


@pytest.mark.parametrize(
    ("base", "settings"),
    [
        ("onnx/openvino/f32", {"precision": "f32", "shapes": "static", "streams": 2}),
        ("onnx/ort/all", {"level": "all", "spinning": False, "block_base": 4}),
    ],
)
def test_searched_runtime_settings_are_written_into_load_py(tiny_study, tmp_path, base,
                                                           settings):
    folder = tmp_path / "study"
    shutil.copytree(tiny_study.folder, folder)
    store = Store(folder)
    row = next(c for c in store.candidates() if c["name"] == base)
    tuned = f"{base}/tuned"
    store.add_candidate(99, tuned, row["passes"], row["runtime"], settings, None)
    store.put_result(tuned, "ok", fidelity=store.results()[base]["fidelity"], passed=True)
    store.close()
    out = Study(folder).export(tmp_path / "out", candidate=tuned)
    code = (out / "load.py").read_text()
    if row["runtime"] == "openvino":
        assert "'NUM_STREAMS': 2" in code and "start_async" in code
        assert "shaped.reshape" in code
        # The corpus job, texts of many lengths, runs on one model compiled for any shape.
        corpus = ["a", "a b c d e f", "one two three four five six seven eight nine ten", "x y"]
        proc = subprocess.run(
            [sys.executable, "-c", "import runpy, sys; g = runpy.run_path(sys.argv[1]); "
             "g['compiled'].clear(); outputs = g['embed_corpus'](sys.argv[2:], batch_size=1); "
             "print(len(outputs), len(g['compiled']))", str(out / "load.py"), *corpus],
            capture_output=True, text=True, cwd=out, timeout=180)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.split()[-2:] == ["4", "1"]
    else:
        assert "add_session_config_entry('session.intra_op.allow_spinning', '0')" in code
        assert "add_session_config_entry('session.dynamic_block_base', '4')" in code
    assert SHAPE.match(run_load(out)), code


def test_runtimes_that_load_a_file_write_their_own_load_py_lines():
    for name in ("ort", "openvino", "torchscript"):
        imports, lines = runtimes.REGISTRY[name].snippet({}, "model.file", 2)
        assert imports.startswith("import ") and "def run(inputs):" in lines, name
        assert "def run_corpus(inputs):" not in lines, name
        assert any("'model.file'" in line for line in lines), name
    for name in ("eager", "compile"):
        assert runtimes.REGISTRY[name].snippet is None, name


def test_only_finished_candidates_export(tiny_study, tmp_path):
    for name in ("torch/compile/fp32", "no/such/candidate"):
        with pytest.raises(HastenError, match="is not a finished candidate"):
            tiny_study.study.export(tmp_path, candidate=name)


def test_export_an_onnx_file_baseline(tmp_path, cnn_onnx, only_candidates):
    only_candidates(menu.ONNX_BASELINE)
    study = hasten.optimize_inference(f"onnx:{cnn_onnx}", batch_sizes=[1, 2], point_s=0.5,
                                      out=tmp_path / "runs")
    out = study.export(tmp_path / "fast")
    assert json.loads((out / "candidate.json").read_text())["candidate"] == (
        menu.ONNX_BASELINE)
    assert (out / "model.onnx").is_file()
    assert run_load(out) == "(2, 3)"


def test_export_of_an_image_study_feeds_the_image_size(tmp_path, cnn_spec, image_folder,
                                                       only_candidates):
    only_candidates(menu.BASELINE, "onnx/ort/all")
    study = hasten.optimize_inference(cnn_spec, data=image_folder, image_size=(12, 10),
                                      quick=True, batch_sizes=[1, 2], out=tmp_path / "runs")
    out = study.export(tmp_path / "fast", candidate="onnx/ort/all")
    # The ONNX graph was exported from 12x10 images, not the factory's 16x16 example.
    assert run_load(out) == "(2, 3)"

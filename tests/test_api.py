"""optimize_inference end to end on tiny models: the study table, resuming, starting over,
crashing candidates, and the errors for bad arguments."""

from __future__ import annotations

import csv
import importlib.metadata
import math
import re
import sqlite3
import subprocess
import sys
import time

import pytest
import torch

import hasten
from hasten import rounds
from hasten.errors import HastenError
from hasten.infer import menu, search
from hasten.infer.workload import Workload, eval_batches
from hasten.models import load_model

BASE = menu.BASELINE


def _timestamps(folder) -> dict:
    with sqlite3.connect(folder / "study.sqlite") as db:
        trials = {(c, p): f for c, p, f in
                  db.execute("SELECT candidate, point, finished FROM trials")}
        results = {c: f for c, f in db.execute("SELECT candidate, finished FROM results")}
    return {"trials": trials, "results": results}


def _rows(study) -> dict:
    return {r["candidate"]: r for r in study.table()}


def test_baseline_is_ok_with_speedup_one(tiny_study):
    study = tiny_study.study
    assert study.finished
    assert study.screen_point == "b2/s16"
    base = _rows(study)[BASE]
    assert base["status"] == "ok" and base["reason"] == ""
    assert base["speedup"][study.screen_point] == 1.0
    # The corpus job runs at the largest batch and, sorted, at the baseline's ideal batch size
    # (whichever gave it the most items per second on this machine).
    ideal = int(base["ideal_point"].split("/")[0][1:])
    assert set(base["points"]) == {"b1/s16", "b2/s16", "dataset/unsorted/b2",
                                   "dataset/sorted/b2", f"dataset/sorted/b{ideal}"}
    assert base["fidelity"]["max_abs_diff"] == 0.0
    assert base["fidelity"]["cosine_mean"] == pytest.approx(1.0, abs=1e-6)
    assert base["fidelity"]["nn_agreement"] == 1.0
    assert {"load_s", "build_s", "first_call_s"} <= set(base["one_time"])
    for point in base["points"].values():
        assert point["p50"] > 0 and point["count"] >= 2 and point["throughput"] > 0
    assert (tiny_study.folder / "reference.npz").is_file()


def test_every_runnable_candidate_has_a_result(tiny_study):
    rows = _rows(tiny_study.study)
    assert set(rows) == {c.name for c in menu.CANDIDATES}
    runnable = {n for n, r in rows.items() if r["status"] != "skipped"}
    model = load_model(tiny_study.kwargs["model"])
    assert runnable == {c.name for c in menu.CANDIDATES
                        if menu.skip_reason(c, model, "cpu", True) is None}
    assert {BASE, "torch/eager/int8-dynamic", "onnx/ort/all", "onnx-fused/ort/all",
            "onnx/openvino/f32"} <= runnable
    for name in runnable:
        row = rows[name]
        assert row["status"] in ("ok", "outside tolerance", "failed"), name
        assert row["status"] == "ok" or row["reason"], name
        assert rows[name]["fidelity"] or row["status"] == "failed", name
    # On this tiny encoder every quick candidate builds, runs and keeps its outputs.
    assert {n for n in runnable if rows[n]["status"] == "ok"} == runnable
    assert any("exported with the dynamo exporter" in n for n in rows["onnx/ort/all"]["notes"])


def test_skipped_rows_have_reasons(tiny_study):
    rows = _rows(tiny_study.study)
    skipped = {n: r["reason"] for n, r in rows.items() if r["status"] == "skipped"}
    assert skipped["torch/compile/fp32"] == "left out in quick mode"
    assert "CUDA" in skipped["torch/eager/fp16-autocast"]
    assert skipped[menu.ONNX_BASELINE] == "the baseline of a PyTorch model is eager fp32"
    assert all(skipped.values())
    assert not any(r["points"] for r in rows.values() if r["status"] == "skipped")


def test_recommendations_exist(tiny_study):
    recs = tiny_study.study.recommendations()
    assert set(recs) == {"latency", "throughput", "corpus", "memory", "size"}
    rows = _rows(tiny_study.study)
    for objective, row in recs.items():
        assert row is not None, objective
        assert rows[row["candidate"]]["status"] == "ok"
    # The baseline and the three fastest passing candidates of each objective's point were
    # timed again in alternating rounds, and those figures chose the recommendation.
    study = tiny_study.study
    plan = study.confirmation["plan"]
    assert plan == study.confirmation_plan() and set(plan) == {"b1/s16", "b2/s16"}
    for point, names in plan.items():
        ranked = sorted((r for r in rows.values() if r["status"] == "ok"
                         and r["candidate"] != BASE and point in r["points"]),
                        key=lambda r: r["points"][point]["p50"])
        assert names == [BASE, *(r["candidate"] for r in ranked[: search.CONFIRM_LEADERS])]
        timed = study.confirmation["results"][point]["candidates"]
        assert list(timed) == names and timed[BASE]["speedup"] == 1.0
        assert all(c["rounds"] == rounds.ROUNDS and c["p50"] > 0 for c in timed.values())
    # The confirmed figures chose the recommendation, unless the baseline's own time there
    # disagreed with its trial's (a loaded machine): then the figures measured alone did.
    confirmed = study.confirmed("b1/s16")
    if confirmed:
        best = min(confirmed, key=lambda n: (-confirmed[n]["speedup"], n))
        assert recs["latency"]["candidate"] == best


def test_study_records_machine_and_settings(tiny_study):
    study = tiny_study.study
    assert study.machine["cores"] == study.config["threads"] >= 1
    assert study.machine["libraries"]["torch"] == importlib.metadata.version("torch")
    assert study.config["quick"] is True and study.config["max_drop"] == 0.01
    assert study.config["spec"] == tiny_study.kwargs["model"]
    assert study.config["workload"]["batch_sizes"] == [1, 2]
    data = tiny_study.kwargs["data"]
    assert "texts" not in study.config["workload"]
    assert study.config["workload"]["data"]["path"] == str(data.resolve())
    assert study.settings.workload.texts[0] == data.read_text().splitlines()[0]
    assert study.config["model"]["random_weights"] is False
    logs = {p.name for p in (tiny_study.folder / "logs").iterdir()}
    # One log per process: screening, the objective points, then the corpus job.
    assert {f"torch_eager_fp32.{phase}.log" for phase in ("screen", "objective", "corpus")
            } <= logs


def test_running_again_resumes_without_rerunning(tiny_study):
    before = _timestamps(tiny_study.folder)
    seen, logged = [], []
    # report=False: the tiny study is shared by the test session's workers, and
    # test_cli.py checks that a resume with --no-report leaves its report.html alone.
    study = hasten.optimize_inference(
        **tiny_study.kwargs, progress=lambda what, done, total: seen.append(what),
        log=logged.append, report=False)
    assert _timestamps(tiny_study.folder) == before
    assert seen[-1] == "done" and logged == []  # nothing ran again, so nothing finished
    assert _rows(study)[BASE]["status"] == "ok"


def test_changed_settings_need_fresh(tiny_study):
    before = _timestamps(tiny_study.folder)
    with pytest.raises(HastenError, match="other settings; set `fresh`"):
        hasten.optimize_inference(**{**tiny_study.kwargs, "max_drop": 0.05})
    assert hasten.Study(tiny_study.folder).config["max_drop"] == 0.01
    assert _timestamps(tiny_study.folder) == before


def test_the_time_budget_cuts_with_reasons_and_the_same_call_goes_on(tmp_path, cnn_spec,
                                                                      only_candidates):
    only_candidates(BASE, "torch/eager/int8-dynamic", "onnx/ort/all")
    kwargs = dict(quick=True, batch_sizes=[1, 2], out=tmp_path, name="budget")
    # The baseline always runs; after it, nothing fits a budget of a millisecond.
    study = hasten.optimize_inference(cnn_spec, budget_s=0.001, **kwargs)
    rows = _rows(study)
    assert study.finished and rows[BASE]["status"] == "ok"
    assert set(rows[BASE]["points"]) == {"b1", "b2"}
    for name in ("torch/eager/int8-dynamic", "onnx/ort/all"):
        assert (rows[name]["status"], rows[name]["reason"]) == (
            "pending", "not screened: the study's time budget of 0.001 s was spent; run the "
            "same command again (or with a larger time budget) to go on")
    assert study.to_dict()["budget_s"] == 0.001
    study = hasten.optimize_inference(cnn_spec, budget_s=math.inf, **kwargs)
    rows = _rows(study)
    assert {r["status"] for r in rows.values() if r["status"] != "skipped"} == {"ok"}
    assert study.budget == {"seconds": math.inf, "cut": {}}


def test_a_screening_killed_between_its_fidelity_check_and_its_timing_runs_again(
        tmp_path, cnn_spec, only_candidates):
    only_candidates(BASE, "torch/eager/int8-dynamic")
    kwargs = dict(quick=True, batch_sizes=[1, 2], out=tmp_path, name="killed")
    study = hasten.optimize_inference(cnn_spec, **kwargs)
    # What a kill leaves when it lands after the result row is written, before the timing.
    with sqlite3.connect(study.folder / "study.sqlite") as db:
        db.execute("DELETE FROM trials WHERE point = ?", (study.screen_point,))
    study = hasten.optimize_inference(cnn_spec, **kwargs)
    for name in (BASE, "torch/eager/int8-dynamic"):
        assert study.screen_point in _rows(study)[name]["points"], name


def test_fresh_starts_over(tmp_path, cnn_spec, only_candidates, monkeypatch):
    only_candidates(BASE, "torch/eager/int8-dynamic")
    # Which candidates survive screening depends on the CPU's speed; both runs must match.
    monkeypatch.setattr(search, "KEEP_FACTOR", float("inf"))
    kwargs = dict(quick=True, batch_sizes=[1, 2], out=tmp_path, name="fresh")
    hasten.optimize_inference(cnn_spec, **kwargs)
    first = _timestamps(tmp_path / "fresh")
    (tmp_path / "fresh" / "stale.txt").write_text("from the first run")
    study = hasten.optimize_inference(cnn_spec, fresh=True, **kwargs)
    second = _timestamps(tmp_path / "fresh")
    assert set(second["trials"]) == set(first["trials"])
    assert all(second["trials"][k] > max(first["trials"].values()) for k in second["trials"])
    assert all(second["results"][k] > first["results"][k] for k in second["results"])
    assert not (tmp_path / "fresh" / "stale.txt").exists()
    assert [r["status"] for r in study.table()] == ["ok", "ok"]


def test_a_crashing_candidate_is_a_failed_row(tmp_path, crash_file, crash_in_children,
                                              only_candidates, monkeypatch):
    only_candidates(BASE, "torch/eager/bf16-weights", "torch/eager/int8-dynamic")
    # Which candidates survive screening depends on the CPU's speed; this test is on crashes.
    monkeypatch.setattr(search, "KEEP_FACTOR", float("inf"))
    study = hasten.optimize_inference(f"py:{crash_file}:build", quick=True,
                                      batch_sizes=[1, 2], out=tmp_path)
    rows = _rows(study)
    crashed = rows["torch/eager/bf16-weights"]
    assert crashed["status"] == "failed"
    assert crashed["reason"] == "the trial process was killed by SIGSEGV"
    assert crashed["failed_points"] == {"b2": "the trial process was killed by SIGSEGV"}
    assert not crashed["points"]
    for name in (BASE, "torch/eager/int8-dynamic"):
        assert rows[name]["status"] == "ok", rows[name]["reason"]
        assert set(rows[name]["points"]) == {"b1", "b2"}
    assert study.best("latency")["candidate"] != "torch/eager/bf16-weights"


def test_a_failing_baseline_stops_the_study(tmp_path, crash_file, crash_in_children,
                                            only_candidates):
    only_candidates(BASE, "torch/eager/int8-dynamic")
    with pytest.raises(HastenError,
                       match=r"baseline \(torch/eager/fp32\) failed: the trial process was "
                             r"killed by SIGSEGV\. See .*logs"):
        hasten.optimize_inference(f"py:{crash_file}:build_always", quick=True,
                                  batch_sizes=[1, 2], out=tmp_path)
    assert not (tmp_path / "crash_net" / "logs" / "torch_eager_int8-dynamic.screen.log").exists()


SLOW = """
import time

import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(8, 4)

    def forward(self, x):
        time.sleep(0.5)
        return self.linear(x)


def build():
    return Net(), torch.randn(2, 8)
"""


def test_a_trial_past_its_time_limit(tmp_path, only_candidates):
    only_candidates(BASE)
    (tmp_path / "slow.py").write_text(SLOW)
    with pytest.raises(HastenError, match="ran past its time limit"):
        hasten.optimize_inference(f"py:{tmp_path / 'slow.py'}:build", quick=True,
                                  batch_sizes=[1], out=tmp_path / "runs", trial_timeout_s=0.2)


HANGS_WHEN_COMPILED = """
import time

import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layers = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                          torch.nn.Linear(16, 4))

    def forward(self, x):
        if torch.compiler.is_compiling():
            time.sleep(3600)  # torch.export, and with it the ONNX export, never ends
        return self.layers(x)


def build():
    return Net(), torch.randn(2, 8)
"""


def test_a_build_the_time_budget_stops_is_cut_not_failed(tmp_path, only_candidates):
    only_candidates(BASE, "onnx/ort/all", "torch/eager/bf16-weights")
    (tmp_path / "hangs.py").write_text(HANGS_WHEN_COMPILED)
    started = time.monotonic()
    study = hasten.optimize_inference(f"py:{tmp_path / 'hangs.py'}:build", quick=True,
                                      batch_sizes=[2], out=tmp_path / "runs", budget_s=60)
    # The export would hang for an hour, and its own time limit is at least 120 s; the build
    # stops at half of what the screening's share (60%, 36 s) has left, which leaves a slow CPU
    # time for the baseline, and the other candidate its screening.
    assert time.monotonic() - started < 110
    rows = _rows(study)
    assert rows["torch/eager/bf16-weights"]["status"] != "pending"
    row = rows["onnx/ort/all"]
    assert row["status"] == "pending"
    assert re.fullmatch(
        r"stopped while it was screened, after \d+ s: no one candidate may take more than half "
        r"of what the study's time budget of 60 s has left; run the same command again \(or "
        r"with a larger time budget\) to go on", row["reason"]), row["reason"]


def test_a_hanging_export_fails_every_candidate_that_needs_it_once(tmp_path, monkeypatch,
                                                                   only_candidates):
    from hasten import executors

    monkeypatch.setattr(executors, "LIMIT_FACTOR", 3)
    monkeypatch.setattr(executors, "LIMIT_FLOOR_S", 20.0)
    onnx = ["onnx/ort/all", "onnx/ort/int8-dynamic", "onnx/openvino/f32"]
    only_candidates(BASE, *onnx, "torch/eager/int8-dynamic")
    (tmp_path / "hangs.py").write_text(HANGS_WHEN_COMPILED)
    logged: list[str] = []
    study = hasten.optimize_inference(f"py:{tmp_path / 'hangs.py'}:build", quick=True,
                                      batch_sizes=[2], out=tmp_path / "runs", log=logged.append)
    rows = _rows(study)
    limit = max(20.0, 3 * _baseline_seconds(study.folder)["screen"])
    reason = f"onnx_export failed: ran past its time limit of {limit:.0f} s and was stopped"
    for name in onnx:
        assert rows[name]["status"] == "failed" and rows[name]["reason"] == reason
    builds = [p.name for p in (study.folder / "logs").iterdir() if p.name.endswith(".build.log")]
    assert len(builds) == 1  # the export was started once, not once per candidate
    assert rows["torch/eager/int8-dynamic"]["status"] == "ok"
    assert any(line.startswith(f"{BASE}  b2  p50 ") for line in logged)
    assert any(line == f"onnx/ort/all  b2  failed: {reason}" for line in logged)


def _baseline_seconds(folder) -> dict:
    import json

    with sqlite3.connect(folder / "study.sqlite") as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'baseline_seconds'").fetchone()
    return json.loads(row[0])


MEMORY_NET = """
import torch


def build():
    torch.manual_seed(0)
    net = torch.nn.Sequential(*[torch.nn.Linear(1024, 1024) for _ in range(8)])
    return net, torch.randn(2, 1024)
"""
# MEMORY_NET's fp32 weights and biases, in MiB.
MEMORY_NET_MB = 8 * (1024 + 1) * 1024 * 4 / 2**20


def _torch_process_mb() -> float:
    """The resident memory (MiB) of a fresh process that has imported PyTorch and nothing else:
    less than any trial process holds before its model is built."""
    code = "import psutil, torch; print(psutil.Process().memory_info().rss / 2**20)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout)


def test_memory_is_the_candidates_own(tmp_path, only_candidates):
    """8 MiB of int8 weights against 32 MiB of fp32 ones; 512 rows of activations against 1.
    Each figure is compared with another measured in this run, never with a constant that
    depends on the CPU's kernels (oneDNN's packed weights and workspace vary with the CPU)."""
    only_candidates(BASE, "onnx/ort/int8-dynamic")
    (tmp_path / "net.py").write_text(MEMORY_NET)
    study = hasten.optimize_inference(f"py:{tmp_path / 'net.py'}:build", quick=True,
                                      batch_sizes=[1, 512], out=tmp_path / "runs")
    rows = _rows(study)
    trials = {(t["candidate"], t["point"]): t["peak_mb"] for t in study.trials}
    fp32, int8 = trials[(BASE, "b1")], trials[("onnx/ort/int8-dynamic", "b1")]
    # At least its weights (so something is counted), and less than PyTorch's own footprint
    # plus those weights, the least that counting the whole trial process would give.
    assert MEMORY_NET_MB <= fp32 < _torch_process_mb() + MEMORY_NET_MB
    assert int8 + 8 < fp32  # ONNX Runtime also holds its prepacked copies of the weights
    assert trials[(BASE, "b512")] > fp32 + 2  # 512 x 1024 floats are 2 MiB
    assert rows[BASE]["peak_mb"] == fp32  # the screening point's figure
    assert study.best("memory")["candidate"] == "onnx/ort/int8-dynamic"


def test_the_fastest_chain_of_a_runtime_is_tuned_after_screening(tmp_path, cnn_spec,
                                                                  only_candidates):
    only_candidates(BASE, "onnx/openvino/f32")
    study = hasten.optimize_inference(cnn_spec, batch_sizes=[1, 2], out=tmp_path)
    rows = _rows(study)
    tuned = rows["onnx/openvino/f32/static-shapes"]
    assert tuned["status"] == "ok" and tuned["settings"] == {"precision": "f32",
                                                             "shapes": "static"}
    assert tuned["passes"] == rows["onnx/openvino/f32"]["passes"]
    assert tuned["fidelity"]["cosine_min"] > 0.9999
    builds = [p for p in (study.folder / "logs").iterdir() if p.name.endswith(".build.log")]
    assert len(builds) == 1  # the variant reuses its chain's artifact


def test_an_onnx_file_study(tmp_path, cnn_onnx, only_candidates):
    only_candidates(BASE, menu.ONNX_BASELINE, "onnx/ort/all")
    study = hasten.optimize_inference(f"onnx:{cnn_onnx}", batch_sizes=[1, 2], point_s=0.5,
                                      out=tmp_path)
    rows = _rows(study)
    assert study.baseline == menu.ONNX_BASELINE
    assert rows[menu.ONNX_BASELINE]["status"] == "ok"
    assert rows[menu.ONNX_BASELINE]["speedup"]["b2"] == 1.0
    assert rows["onnx/ort/all"]["status"] == "ok"
    assert rows["onnx/ort/all"]["fidelity"]["max_abs_diff"] < 1e-5
    assert rows[BASE]["status"] == "skipped"


def test_an_onnx_file_study_in_quick_mode_runs_its_baseline(tmp_path, cnn_onnx,
                                                            only_candidates):
    only_candidates(menu.ONNX_BASELINE)
    study = hasten.optimize_inference(f"onnx:{cnn_onnx}", quick=True, batch_sizes=[1, 2],
                                      out=tmp_path)
    assert _rows(study)[menu.ONNX_BASELINE]["status"] == "ok"


def test_classification_with_labels(tmp_path, tiny_bert_cls_dir, sentences, only_candidates):
    spec = f"hf:{tiny_bert_cls_dir}"
    loaded = load_model(spec)
    workload = Workload(texts=sentences, labels=None, batch_sizes=[1], seq_lengths=[16],
                        eval_samples=128, dataset_batch_size=1, max_length=128)
    batches, order = eval_batches(loaded, workload)
    with torch.inference_mode():
        predicted = torch.cat([loaded.module(*b) for b in batches]).argmax(1).tolist()
    labels = [0] * len(sentences)
    for position, index in enumerate(order):
        labels[index] = predicted[position]
    data = tmp_path / "labelled.csv"
    with data.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "stars"])
        writer.writerows(zip(sentences, labels, strict=True))
    only_candidates(BASE, "torch/eager/int8-dynamic")
    study = hasten.optimize_inference(spec, data=data, column="review", label_column="stars",
                                      quick=True, batch_sizes=[1, 2], seq_lengths=[16],
                                      out=tmp_path)
    rows = _rows(study)
    assert study.config["model"]["task"] == "sequence-classification"
    assert rows[BASE]["fidelity"]["accuracy"] == 1.0
    assert rows[BASE]["fidelity"]["top1_agreement"] == 1.0
    int8 = rows["torch/eager/int8-dynamic"]
    drop = 1.0 - int8["fidelity"]["accuracy"]
    assert (int8["status"] == "ok") == (drop <= 0.01)
    if int8["status"] != "ok":
        assert "accuracy dropped" in int8["reason"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_drop": 0.0}, "`max_drop` must be between 0 and 1"),
        ({"max_drop": 1.5}, "`max_drop` must be between 0 and 1"),
        ({"batch_sizes": [0]}, "Batch sizes must be between 1 and 4096"),
        ({"batch_sizes": [8, 5000]}, "Batch sizes must be between 1 and 4096"),
        ({"seq_lengths": [1]}, "Sequence lengths must be between 2 and 128"),
        ({"seq_lengths": [16, 1000]}, "Sequence lengths must be between 2 and 128"),
        ({"max_length": 129}, "`max_length` must be between 2 and 128 tokens for this model"),
        ({"column": "review", "data": "reviews.csv"}, "does not exist"),
        ({"calibration_samples": 0}, "`calibration_samples` must be at least 1"),
    ],
)
def test_bad_arguments_on_a_text_model(tmp_path, tiny_bert_spec, kwargs, message):
    with pytest.raises(HastenError, match=message):
        hasten.optimize_inference(tiny_bert_spec, out=tmp_path, quick=True, **kwargs)
    assert not (tmp_path / "tiny-bert0").exists()


def test_cuda_without_a_gpu(tmp_path, cnn_spec):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(HastenError, match="sees no CUDA GPU"):
        hasten.optimize_inference(cnn_spec, device="cuda", out=tmp_path)


def test_an_image_folder_study_measures_accuracy(tmp_path, cnn_spec, image_folder,
                                                 only_candidates):
    only_candidates(BASE, "torch/eager/channels-last")
    study = hasten.optimize_inference(cnn_spec, data=image_folder, quick=True,
                                      batch_sizes=[1, 2], out=tmp_path, mean=[0.5], std=[0.25])
    workload = study.settings.workload
    assert len(workload.images) == 12 and sorted(set(workload.labels)) == [0, 1, 2]
    assert workload.image["size"] == [16, 16] and workload.image["std"] == [0.25] * 3
    stored = study.config["workload"]  # the images' folder and count, not the images
    assert "images" not in stored and stored["data"]["found"] == stored["data"]["used"] == 12
    rows = _rows(study)
    assert set(rows[BASE]["points"]) == {"b1", "b2"}
    for name in (BASE, "torch/eager/channels-last"):
        assert rows[name]["status"] == "ok", rows[name]["reason"]
        # b1 too when screening keeps it: a 0.1 ms forward on a busy machine may not be.
        assert "b2" in rows[name]["points"]
        assert {"accuracy", "top1_agreement"} <= set(rows[name]["fidelity"])
    fast = rows["torch/eager/channels-last"]["fidelity"]
    assert fast["accuracy"] == rows[BASE]["fidelity"]["accuracy"]
    assert fast["top1_agreement"] == 1.0 and fast["max_abs_diff"] < 1e-4
    assert study.to_dict()["images"] == 12


@pytest.fixture
def four_classes(tmp_path, image_folder):
    """The image folder with a fourth class: more classes than the tiny CNN has outputs."""
    import shutil

    folder = tmp_path / "four"
    shutil.copytree(image_folder, folder)
    shutil.copytree(image_folder / "owl", folder / "yak")
    return folder


@pytest.mark.parametrize(
    ("spec", "kwargs", "message"),
    [
        ("cnn", {"data": "texts"}, "must be a folder of images"),
        ("cnn", {"data": "empty"}, "holds no images"),
        ("cnn", {"data": "four"}, "has 4 class folders, and the model's output is shaped"),
        ("cnn", {"data": "images", "label_column": "y"}, "labels come from its class folders"),
        ("cnn", {"image_size": (8, 8)}, "`image_size`, `mean` and `std` say how to prepare"),
        ("cnn", {"data": "images", "mean": [0.1, 0.2]}, "`mean` has 2 values"),
        ("bert", {"data": "images"}, "is a folder, and tiny-bert.* takes text"),
        ("bert", {"data": "texts", "std": [0.5]}, "`image_size`, `mean` and `std`"),
    ],
)
def test_bad_image_arguments(tmp_path, cnn_spec, tiny_bert_spec, texts_file, image_folder,
                             four_classes, spec, kwargs, message):
    (tmp_path / "empty").mkdir()
    data = {"texts": texts_file, "empty": tmp_path / "empty", "four": four_classes,
            "images": image_folder}
    if "data" in kwargs:
        kwargs["data"] = data[kwargs["data"]]
    model = {"cnn": cnn_spec, "bert": tiny_bert_spec}[spec]
    with pytest.raises(HastenError, match=message):
        hasten.optimize_inference(model, out=tmp_path / "runs", quick=True, **kwargs)
    assert not (tmp_path / "runs").exists()


def test_a_broken_forward_is_one_clear_error(tmp_path, broken_spec):
    with pytest.raises(HastenError, match="forward fails on the inputs \\(RuntimeError: this "
                                          "forward is broken on purpose\\)"):
        hasten.optimize_inference(broken_spec, out=tmp_path, quick=True)
    assert list(tmp_path.iterdir()) == []


def test_static_int8_candidates_calibrate_on_the_workload(tmp_path, cnn_spec, only_candidates):
    only_candidates(menu.BASELINE, "onnx/ort/int8-static-minmax", "onnx/openvino/int8-nncf")
    study = hasten.optimize_inference(cnn_spec, out=tmp_path, batch_sizes=[2],
                                      calibration_samples=24, report=False)
    assert study.config["workload"]["calibration_samples"] == 24
    rows = {r["candidate"]: r for r in study.table()}
    for name, method in (("onnx/ort/int8-static-minmax", "minmax"),
                         ("onnx/openvino/int8-nncf", "NNCF")):
        assert rows[name]["status"] in ("ok", "outside tolerance"), rows[name]
        assert f"calibrated ({method}) on 24 samples" in rows[name]["notes"]
        assert any(n.startswith("all layers int8: validation cosine") for n in rows[name]["notes"])

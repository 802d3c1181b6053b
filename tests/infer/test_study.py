"""A study read back from its store: ranking, speedups, best per objective, the report."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from hasten import Study
from hasten.errors import HastenError
from hasten.infer.workload import Workload
from hasten.report.terminal import render
from hasten.store import Store

BASE = "torch/eager/fp32"
MACHINE = {"cpu": "Test CPU", "cores": 2, "flags": {"avx2": True, "amx_bf16": False},
           "gpu": None}


def make_study(folder, batch_sizes=(1, 8), seq=16, threads=2):
    """A hand-written study: a baseline, a faster ok candidate, a smaller one that is outside
    the tolerance, a failed one, a pending one and a skipped one."""
    workload = Workload(texts=["A.", "B."], labels=None, batch_sizes=list(batch_sizes),
                        seq_lengths=[seq], eval_samples=2, dataset_batch_size=max(batch_sizes),
                        max_length=128)
    store = Store(folder)
    store.set_meta("config", {"kind": "infer", "spec": "demo", "task": None, "input_shape": None,
                              "workload": workload.to_dict(), "max_drop": 0.01,
                              "quick": True, "device": "cpu", "threads": threads,
                              "point_s": 1.0, "baseline": BASE,
                              "model": {"name": "fake", "kind": "text",
                                        "input_names": ["input_ids"]}})
    store.set_meta("machine", MACHINE)
    names = [BASE, "fast", "wrong", "broken", "later", "skipped"]
    for i, name in enumerate(names):
        store.add_candidate(i, name, [], "eager", {},
                            "not on this CPU" if name == "skipped" else None)
    fid = {"cosine_mean": 1.0, "cosine_min": 1.0, "max_abs_diff": 0.0, "finite": True,
           "nn_agreement": 1.0}
    store.put_result(BASE, "ok", fidelity=fid, passed=True, gate_reason="", size_bytes=4000,
                     notes=[])
    store.put_result("fast", "ok", fidelity={**fid, "cosine_mean": 0.999}, passed=True,
                     gate_reason="", size_bytes=3000, notes=["a note"])
    store.put_result("wrong", "ok", fidelity={**fid, "cosine_mean": 0.5}, passed=False,
                     gate_reason="pooled cosine 0.5000 < 0.9900", size_bytes=10)
    store.put_result("broken", "failed", error="the trial process was killed by SIGSEGV")
    p50 = {BASE: 10.0, "fast": 4.0, "wrong": 1.0}
    peak = {BASE: 500.0, "fast": 600.0, "wrong": 100.0}
    for name, ms in p50.items():
        for b in batch_sizes:
            latency = {"p50": ms * b, "p90": ms * b * 1.1, "count": 5, "load_avg": 0.5}
            store.put_trial(name, f"b{b}/s{seq}", "latency", "ok", latency=latency,
                            throughput=b / (ms * b / 1000), items=b, peak_mb=peak[name])
    store.put_trial("broken", f"b{max(batch_sizes)}/s{seq}", "latency", "failed", error="SIGSEGV")
    store.set_meta("finished", True)
    store.close()
    return Study(folder)


def test_not_a_study_folder(tmp_path):
    with pytest.raises(HastenError, match="not a hasten study folder"):
        Study(tmp_path)


def test_table_ranks_and_explains(tmp_path):
    study = make_study(tmp_path)
    assert study.finished and study.baseline == BASE
    assert study.screen_point == "b8/s16"
    rows = study.table()
    assert [(r["candidate"], r["status"]) for r in rows] == [
        ("fast", "ok"), (BASE, "ok"), ("wrong", "outside tolerance"), ("broken", "failed"),
        ("later", "pending"), ("skipped", "skipped")]
    by = {r["candidate"]: r for r in rows}
    assert by[BASE]["speedup"] == {"b1/s16": 1.0, "b8/s16": 1.0}
    assert by["fast"]["speedup"]["b8/s16"] == pytest.approx(2.5)
    assert by["fast"]["points"]["b1/s16"]["throughput"] == pytest.approx(250.0)
    assert by["wrong"]["reason"].startswith("pooled cosine")
    assert by["broken"]["reason"] == "the trial process was killed by SIGSEGV"
    assert by["broken"]["failed_points"] == {"b8/s16": "SIGSEGV"}
    assert by["later"]["reason"] == "not run yet"
    assert by["skipped"]["reason"] == "not on this CPU"
    assert by["fast"]["notes"] == ["a note"] and by["fast"]["peak_mb"] == 600.0


def test_best_per_objective_never_picks_a_failing_candidate(tmp_path):
    study = make_study(tmp_path)
    assert study.best("latency")["candidate"] == "fast"
    assert study.best("latency", batch_size=8)["candidate"] == "fast"
    assert study.best("throughput")["candidate"] == "fast"
    assert study.best("memory")["candidate"] == BASE  # "wrong" uses less but is outside
    assert study.best("size")["candidate"] == "fast"
    assert {k: v and v["candidate"] for k, v in study.recommendations().items()} == {
        "latency": "fast", "throughput": "fast", "corpus": None, "memory": BASE, "size": "fast"}
    with pytest.raises(HastenError, match="Unknown objective 'speed'"):
        study.best("speed")
    assert study.point(8) == "b8/s16" and study.point(1, 64) == "b1/s64"


def test_latency_recommendation_without_batch_one(tmp_path):
    study = make_study(tmp_path, batch_sizes=(8, 32))
    assert study.best("latency") is not None


def test_to_dict_is_json(tmp_path):
    study = make_study(tmp_path)
    data = json.loads(json.dumps(study.to_dict()))
    assert data["baseline"] == BASE and data["screen_point"] == "b8/s16"
    assert data["recommendations"]["latency"] == "fast"
    assert "texts" not in data["workload"] and data["corpus_size"] == 2
    assert data["busy_points"] == 0
    assert len(data["candidates"]) == 6


def test_busy_points_count_loaded_measurements(tmp_path):
    study = make_study(tmp_path)
    assert study.busy_points() == 0
    store = Store(tmp_path)
    store.put_trial("fast", "b1/s16", "latency", "ok",
                    latency={"p50": 4.0, "p90": 4.4, "load_avg": 3.5},
                    throughput=250.0, items=1, peak_mb=600.0)
    store.close()
    assert Study(tmp_path).busy_points() == 1


def test_export_without_a_passing_candidate(tmp_path):
    study = make_study(tmp_path)
    for name in (BASE, "fast"):
        study.results[name]["passed"] = False
    with pytest.raises(HastenError, match="No candidate .* passed for 'latency'"):
        study.export(tmp_path / "out")


def test_render(tmp_path):
    study = make_study(tmp_path)
    buffer = io.StringIO()
    render(study, Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "fake on Test CPU, 2 cores (avx2)" in text
    assert "speedup at b8/s16 against torch/eager/fp32" in text
    assert "2.50x" in text and "1.00x" in text
    assert "broken: the trial process was killed by SIGSEGV" in text
    assert "wrong: pooled cosine 0.5000 < 0.9900" in text
    assert "Skipped" in text and "skipped: not on this CPU" in text
    assert "fast: a note" in text
    assert "latency: fast" in text and "memory: torch/eager/fp32" in text
    assert "Warning" not in text


def _with_int8(folder, flags, facts):
    """make_study plus an int8 candidate, passing and slower than the fastest float one."""
    make_study(folder)
    store = Store(folder)
    store.set_meta("machine", {**MACHINE, "flags": flags})
    store.add_candidate(9, "onnx/ort/int8-static-minmax",
                        ["onnx_export", "ort_quantize_static_minmax"], "ort", {}, None)
    store.put_result("onnx/ort/int8-static-minmax", "ok", fidelity={"cosine_mean": 0.995},
                     passed=True, gate_reason="", size_bytes=1000, facts=facts)
    store.put_trial("onnx/ort/int8-static-minmax", "b8/s16", "latency", "ok",
                    latency={"p50": 40.0, "p90": 44.0, "count": 5}, throughput=200.0, items=8,
                    peak_mb=300.0)
    store.close()
    return Study(folder)


@pytest.mark.parametrize(("flags", "facts", "why"), [
    ({"avx2": True}, {}, "no VNNI or AMX"),
    ({"avx512_vnni": True}, {"float_layers": [16, 37]}, "16 of 37 layers stay in float"),
    ({"amx_int8": True}, {"float_layers": [1, 37]}, "quantize/dequantize steps"),
])
def test_int8_slower_than_float_is_shown_with_its_reason(tmp_path, flags, facts, why):
    study = _with_int8(tmp_path, flags, facts)
    by = {r["candidate"]: r for r in study.table()}
    slow = by["onnx/ort/int8-static-minmax"]["slower_than_float"]
    assert slow["than"] == "fast" and slow["ratio"] == pytest.approx(32.0 / 40.0)
    assert why in slow["why"]
    assert "slower_than_float" not in by["fast"] and "slower_than_float" not in by[BASE]
    console = Console(file=io.StringIO(), width=300)
    render(study, console)
    out = console.file.getvalue()
    assert "(slower than float)" in out
    assert "onnx/ort/int8-static-minmax: 0.80x the speed of fast; likely because" in out
    from hasten.report import html

    assert "slower than float: 0.80x the speed of fast; likely because" in html.render(study)


def test_the_confirmation_plan_and_the_confirmed_ranking(tmp_path):
    study = make_study(tmp_path)
    # The baseline and the passing leaders of each objective's point; "wrong" is outside.
    assert study.confirmation_plan() == {"b1/s16": [BASE, "fast"], "b8/s16": [BASE, "fast"]}
    store = Store(tmp_path)
    confirmed = {BASE: {"p50": 10.0, "speedup": 1.0, "speedup_low": 1.0, "speedup_high": 1.0,
                        "rounds": 5},
                 "fast": {"p50": 12.0, "speedup": 0.83, "speedup_low": 0.8,
                          "speedup_high": 0.9, "rounds": 5}}
    store.set_meta("confirmation", {"plan": study.confirmation_plan(), "results": {
        "b1/s16": {"candidates": confirmed}, "b8/s16": {"error": "RuntimeError: boom"}}})
    store.close()
    study = Study(tmp_path)
    # Alone "fast" looked 2.5x faster; timed in alternation it was slower: the baseline wins
    # latency. Throughput's point failed to confirm, so its ranking stays the measured one.
    assert study.best("latency")["candidate"] == BASE
    assert study.best("throughput")["candidate"] == "fast"
    buffer = io.StringIO()
    render(study, Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "b1/s16 │ fast" in text and "2.50x" in text and "0.83x (0.80-0.90)" in text
    assert "failed: RuntimeError: boom" in text


def test_a_confirmation_that_slowed_the_baseline_is_void(tmp_path):
    study = make_study(tmp_path)
    store = Store(tmp_path)
    # The baseline ran 50x its own trial's time in the confirmation (a tiny model's threads
    # asleep between blocks): every ratio at that point is void.
    slowed = {BASE: {"p50": 500.0, "speedup": 1.0, "speedup_low": 1.0, "speedup_high": 1.0,
                     "rounds": 5, "alone_p50": 10.0, "agrees": False},
              "fast": {"p50": 0.5, "speedup": 1000.0, "speedup_low": 900.0,
                       "speedup_high": 1100.0, "rounds": 5, "alone_p50": 0.5, "agrees": True}}
    store.set_meta("confirmation", {"plan": study.confirmation_plan(), "results": {
        "b1/s16": {"candidates": slowed}}})
    store.close()
    study = Study(tmp_path)
    assert study.confirmed("b1/s16") == {}
    assert study.best("latency")["candidate"] == "fast"
    buffer = io.StringIO()
    render(study, Console(file=buffer, width=250))
    text = " ".join(buffer.getvalue().split())
    assert "1000.00x (900.00-1100.00); void: the baseline's own time disagreed" in text


def test_what_the_time_budget_left_out_is_shown_with_its_reason(tmp_path):
    from hasten.report import html

    make_study(tmp_path)
    store = Store(tmp_path)
    store.set_meta("budget", {"seconds": 480.0, "cut": {
        "fast": "measured at the screening point only: the study's time budget of 8 min was "
                "spent; run the same command again (or with a larger time budget) to go on",
        "later": "not screened: the study's time budget of 8 min was spent; run the same "
                 "command again (or with a larger time budget) to go on"}})
    store.close()
    study = Study(tmp_path)
    by = {r["candidate"]: r for r in study.table()}
    assert by["later"]["status"] == "pending" and by["later"]["reason"].startswith("not screened")
    assert by["fast"]["budget_cut"].startswith("measured at the screening point only")
    buffer = io.StringIO()
    render(study, Console(file=buffer, width=300))
    text = buffer.getvalue()
    assert "Time budget\n  fast: measured at the screening point only: the study's time" in text
    assert "later: not screened: the study's time budget of 8 min was spent" in text
    document = html.render(study)
    assert "measured at the screening point only: the study&#x27;s time budget" in document
    assert study.to_dict()["budget_s"] == 480.0


def test_throughput_is_judged_at_each_candidates_ideal_batch_size(tmp_path):
    from hasten.report.common import ranked_cells, ranked_headers

    make_study(tmp_path, batch_sizes=(1, 8, 32))
    store = Store(tmp_path)
    # "fast" peaks at batch 8 (250, 1,000 and 200 items/s at batch 1, 8 and 32); the baseline
    # keeps gaining up to 32 (100, 100, 200 items/s).
    store.put_trial("fast", "b8/s16", "latency", "ok", latency={"p50": 8.0, "p90": 9.0, "count": 5},
                    throughput=1000.0, items=8, peak_mb=600.0)
    store.put_trial("fast", "b32/s16", "latency", "ok",
                    latency={"p50": 160.0, "p90": 170.0, "count": 5},
                    throughput=200.0, items=32, peak_mb=600.0)
    store.put_trial(BASE, "b32/s16", "latency", "ok",
                    latency={"p50": 160.0, "p90": 170.0, "count": 5},
                    throughput=200.0, items=32, peak_mb=500.0)
    store.close()
    study = Study(tmp_path)
    by = {r["candidate"]: r for r in study.table()}
    assert by["fast"]["ideal_point"] == "b8/s16" and by[BASE]["ideal_point"] == "b32/s16"
    assert study.best("throughput")["candidate"] == "fast"
    assert study.objective_point("throughput") == "b8/s16"
    assert study.objective_point("throughput", batch_size=32) == "b32/s16"
    # The baseline and the leader are confirmed at the leader's ideal batch size.
    assert study.confirmation_plan()["b8/s16"] == [BASE, "fast"]
    column = ranked_headers(study).index("items/s (ideal batch)")
    assert ranked_cells(study, by["fast"])[column] == "1,000 (b8)"
    assert ranked_cells(study, by[BASE])[column] == "200 (b32)"


def test_the_corpus_job_at_the_best_batch_size_against_the_naive_job(tmp_path):
    from hasten.report.common import recommendation_detail

    make_study(tmp_path, batch_sizes=(1, 8, 32))
    store = Store(tmp_path)
    for name, point, items_per_s in ((BASE, "dataset/unsorted/b32", 100.0),
                                     (BASE, "dataset/sorted/b32", 200.0),
                                     ("fast", "dataset/unsorted/b32", 300.0),
                                     ("fast", "dataset/sorted/b32", 500.0),
                                     ("fast", "dataset/sorted/b8", 700.0)):
        store.put_trial(name, point, "latency", "ok", latency={"p50": 2000 / items_per_s * 1000,
                                                    "p90": 1.0, "count": 3},
                        throughput=items_per_s, items=2, peak_mb=1.0)
    store.close()
    study = Study(tmp_path)
    by = {r["candidate"]: r for r in study.table()}
    assert study.corpus_job(by["fast"]) == {
        "items_per_s": 700.0, "batch_size": 8,
        "naive_items_per_s": 100.0, "gain": 7.0}
    assert study.best("corpus")["candidate"] == "fast"
    assert study.corpus_job(by["wrong"]) is None
    assert recommendation_detail(study, "corpus", by["fast"]) == (
        "700 items/s over the corpus sorted by length, batch 8, each batch padded to its "
        "longest text (texts cut at 128 tokens); 7.00x the naive job (torch/eager/fp32 "
        "unsorted at batch 32)")
    buffer = io.StringIO()
    render(study, Console(file=buffer, width=250))
    assert "corpus: fast (700 items/s over the corpus sorted by length, batch 8" in (
        buffer.getvalue())

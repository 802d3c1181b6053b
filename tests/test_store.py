"""The SQLite study store: what is written reads back, also from a second connection."""

from __future__ import annotations

import json
import sqlite3

import pytest

from hasten.store import Meta, Store


def _fill(store: Store) -> None:
    store.set_meta("config", {"spec": "demo", "batch_sizes": [1, 8], "max_drop": 0.01})
    store.add_candidate(0, "torch/eager/fp32", [], "eager", {}, None)
    store.add_candidate(1, "onnx/ort/all", ["onnx_export"], "ort", {"level": "all"}, None)
    store.add_candidate(2, "torch/eager/fp16-autocast", ["autocast_fp16"], "eager", {},
                        "fp16 autocast is for CUDA")
    store.put_result("torch/eager/fp32", "ok", fidelity={"cosine_mean": 1.0}, passed=True,
                     gate_reason="", one_time={"load_s": 0.5}, size_bytes=1234,
                     notes=["a note"])
    store.put_result("onnx/ort/all", "failed", error="RuntimeError: boom")
    store.put_trial("torch/eager/fp32", "b1/s16", "latency", "ok", latency={"p50": 1.5, "count": 5},
                    throughput=666.0, items=1, peak_mb=300.0)
    store.put_trial("torch/eager/fp32", "b8/s16", "latency", "ok", latency={"p50": 4.0, "count": 5},
                    throughput=2000.0, items=8, peak_mb=310.0)
    store.put_trial("onnx/ort/all", "b8/s16", "latency", "failed", error="RuntimeError: boom")


def _check(store: Store) -> None:
    assert store.meta("config") == {"spec": "demo", "batch_sizes": [1, 8], "max_drop": 0.01}
    assert store.meta(Meta.BUDGET, "default") == "default"
    with pytest.raises(ValueError, match="'missing' is not a valid Meta"):
        store.meta("missing")  # every key is declared in Meta
    candidates = store.candidates()
    assert [c["name"] for c in candidates] == [
        "torch/eager/fp32", "onnx/ort/all", "torch/eager/fp16-autocast"]
    assert candidates[1]["passes"] == ["onnx_export"]
    assert candidates[1]["settings"] == {"level": "all"}
    assert candidates[2]["skipped_reason"] == "fp16 autocast is for CUDA"
    results = store.results()
    base = results["torch/eager/fp32"]
    assert base["status"] == "ok" and base["passed"] is True
    assert base["fidelity"] == {"cosine_mean": 1.0}
    assert base["one_time"] == {"load_s": 0.5}
    assert (base["size_bytes"], base["notes"]) == (1234, ["a note"])
    failed = results["onnx/ort/all"]
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: boom"
    assert failed["passed"] is None and failed["fidelity"] is None and failed["notes"] == []
    trials = store.trials()
    assert len(trials) == 3
    by_key = {(t["candidate"], t["point"]): t for t in trials}
    ok = by_key[("torch/eager/fp32", "b8/s16")]
    assert ok["latency"] == {"p50": 4.0, "count": 5}
    assert (ok["throughput"], ok["items"], ok["peak_mb"]) == (2000.0, 8, 310.0)
    assert by_key[("onnx/ort/all", "b8/s16")]["latency"] is None
    assert store.done_points("torch/eager/fp32") == {"b1/s16", "b8/s16"}
    assert store.done_points("nobody") == set()


def test_roundtrip(tmp_path):
    store = Store(tmp_path / "study")
    _fill(store)
    _check(store)
    store.close()
    assert (tmp_path / "study" / "study.sqlite").is_file()


def test_a_second_store_sees_the_rows(tmp_path):
    first = Store(tmp_path)
    _fill(first)
    first.close()
    second = Store(tmp_path)
    _check(second)
    second.close()


def test_rows_are_visible_while_the_writer_is_open(tmp_path):
    writer, reader = Store(tmp_path), Store(tmp_path)
    writer.put_trial("c", "b1", "latency", "ok", latency={"p50": 1.0})
    assert reader.done_points("c") == {"b1"}
    writer.close()
    reader.close()


def test_writing_again_replaces_the_row(tmp_path):
    store = Store(tmp_path)
    store.put_result("c", "failed", error="first try")
    store.put_result("c", "ok", passed=False, gate_reason="too far")
    store.put_trial("c", "b1", "latency", "failed", error="x")
    store.put_trial("c", "b1", "latency", "ok", latency={"p50": 2.0})
    assert store.results()["c"]["status"] == "ok"
    assert store.results()["c"]["passed"] is False
    assert [t["status"] for t in store.trials()] == ["ok"]
    store.set_meta("finished", False)
    store.set_meta("finished", True)
    assert store.meta("finished") is True
    store.close()


def test_rows_are_committed_as_they_are_written(tmp_path):
    store = Store(tmp_path)
    store.put_result("c", "ok", passed=True)
    # A plain sqlite3 connection sees the row without the store being closed.
    with sqlite3.connect(tmp_path / "study.sqlite") as db:
        assert db.execute("SELECT status FROM results").fetchall() == [("ok",)]
    store.close()


def test_a_trial_keeps_its_kind_and_its_details_apart_from_its_timing(tmp_path):
    store = Store(tmp_path)
    store.put_trial("32-true", "speed", "speed", "ok", latency={"p50": 20.0},
                    details={"losses": [2.3, 2.1], "diverged": None}, throughput=50.0)
    store.put_trial("32-true", "probe-b64", "probe", "ok", latency={"p50": 80.0})
    trials = {t["point"]: t for t in store.trials()}
    assert trials["speed"]["kind"] == "speed" and trials["probe-b64"]["kind"] == "probe"
    assert trials["speed"]["latency"] == {"p50": 20.0}
    assert trials["speed"]["details"] == {"losses": [2.3, 2.1], "diverged": None}
    assert trials["probe-b64"]["details"] is None
    store.close()


def test_trials_are_asked_of_the_database_by_candidate_point_kind_and_status(tmp_path):
    store = Store(tmp_path)
    store.put_trial("a", "speed", "speed", "ok", latency={"p50": 1.0})
    store.put_trial("a", "seed-0", "converge", "failed", error="nan")
    store.put_trial("b", "speed", "speed", "ok", latency={"p50": 2.0})
    assert [t["point"] for t in store.trials("a")] == ["speed", "seed-0"]
    assert [t["candidate"] for t in store.trials(point="speed")] == ["a", "b"]
    assert [t["point"] for t in store.trials("a", status="ok")] == ["speed"]
    assert [t["error"] for t in store.trials(kind="converge")] == ["nan"]
    assert store.trials("c") == [] and len(store.trials()) == 3
    store.close()


def _version_2(folder) -> None:
    """A study as version 2 wrote it: results without facts, the layers an int8 search kept
    in float said only in a note."""
    from hasten.store import SCHEMA

    folder.mkdir()
    db = sqlite3.connect(folder / "study.sqlite")
    db.executescript(SCHEMA.replace(", facts TEXT", ""))
    db.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    for name, notes in (("int8", ["all layers int8: validation cosine 0.9", "kept in float (3 "
                                  "of 12 layers, most damaging first): a, b, c"]),
                        ("fp32", ["a note"])):
        db.execute("INSERT INTO results VALUES (?, 'ok', NULL, '{}', 1, '', '{}', 10, ?, 0.0)",
                   (name, json.dumps(notes)))
    db.commit()
    db.close()


def test_a_version_2_study_is_read_as_it_is_and_migrated_by_its_next_writer(tmp_path):
    _version_2(tmp_path / "study")
    reader = Store(tmp_path / "study", readonly=True)  # the facts read from the notes
    assert reader.results()["int8"]["facts"] == {"float_layers": [3, 12]}
    assert reader.results()["int8"]["notes"][1].startswith("kept in float (3 of 12")
    assert reader.meta(Meta.SCHEMA_VERSION) == 2  # nothing written
    reader.close()
    writer = Store(tmp_path / "study")
    results = writer.results()
    assert results["int8"]["facts"] == {"float_layers": [3, 12]}
    assert results["fp32"]["facts"] == {}
    assert writer.meta(Meta.SCHEMA_VERSION) == 3
    writer.put_result("new", "ok", facts={"float_layers": [1, 4]})
    writer.close()
    again = Store(tmp_path / "study")  # a migrated study opens as this version's
    assert again.results()["new"]["facts"] == {"float_layers": [1, 4]}
    again.close()

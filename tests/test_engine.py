"""The one study engine: typed settings stored and read back, a folder with other settings
refused, failures turned into rows in one place, and a folder of the previous version refused
in one sentence."""

from __future__ import annotations

import json
import sqlite3

import pytest

from hasten.engine import Engine, record_failure, stored_settings
from hasten.errors import HastenError
from hasten.infer.settings import InferSettings
from hasten.infer.workload import Workload
from hasten.store import SCHEMA_VERSION, Store
from hasten.train.settings import TrainSettings


def infer_settings(**fields) -> InferSettings:
    workload = Workload(texts=["One text.", "Two texts."], labels=None, batch_sizes=[1, 2],
                        seq_lengths=[16], eval_samples=2, dataset_batch_size=2, max_length=32)
    base = dict(device="cpu", max_drop=0.01, quick=True, threads=2, point_s=1.0,
                baseline="torch/eager/fp32", model={"kind": "text"}, spec="demo", task=None,
                input_shape=None, workload=workload)
    return InferSettings(**{**base, **fields})


def train_settings(**fields) -> TrainSettings:
    base = dict(device="cpu", max_drop=0.01, quick=False, threads=2, point_s=1.0,
                baseline="32-true", model={"train_size": 64}, recipe="r.py", steps=10,
                batch_size=8, eval=True, devices=1, memory_budget_mb=512.0)
    return TrainSettings(**{**base, **fields})


def engine(folder, settings, **kwargs) -> Engine:
    return Engine(folder, settings, module="hasten.no_such_module", kind_of=lambda p: "latency",
                  **kwargs)


def test_settings_are_stored_as_json_and_read_back(tmp_path):
    for settings in (infer_settings(), train_settings()):
        stored = json.loads(json.dumps(settings.to_dict()))
        assert stored["kind"] == settings.kind
        assert type(settings).from_dict(stored).to_dict() == stored
    assert TrainSettings.from_dict(train_settings().to_dict()) == train_settings()
    # An inference study's samples are read back from its folder, not from its settings.
    settings = infer_settings()
    settings.workload.write_samples(tmp_path)
    back = InferSettings.from_dict(json.loads(json.dumps(settings.to_dict())))
    back.workload.read_samples(tmp_path)
    assert back == settings
    with pytest.raises(HastenError, match="of a train study, not of a infer study"):
        InferSettings.from_dict(train_settings().to_dict())


@pytest.mark.parametrize(("settings", "message"), [
    (infer_settings(max_drop=1.5), "`max_drop` must be between 0 and 1, not 1.5."),
    (infer_settings(device="tpu"), "`device` must be cpu or cuda, not 'tpu'."),
    (train_settings(steps=0), "`steps`, `batch_size` and `devices` must each be at least 1."),
    (train_settings(memory_budget_mb=-1.0), "`memory_budget_mb` must be more than zero."),
])
def test_settings_are_checked_once_and_named(settings, message):
    with pytest.raises(HastenError) as caught:
        settings.check()
    assert str(caught.value) == message


def test_a_folder_with_other_settings_is_refused_and_fresh_starts_over(tmp_path):
    first = engine(tmp_path / "s", train_settings())
    first.store.put_trial("32-true", "speed", "speed", "ok", throughput=1.0)
    first.close()
    assert stored_settings(tmp_path / "s", TrainSettings) == train_settings()
    assert stored_settings(tmp_path / "s", InferSettings) is None
    with pytest.raises(HastenError, match=r"holds a study with other settings; set `fresh`"):
        engine(tmp_path / "s", train_settings(steps=20))
    again = engine(tmp_path / "s", train_settings())
    assert again.store.done_points("32-true") == {"speed"}
    again.close()
    fresh = engine(tmp_path / "s", train_settings(steps=20), fresh=True)
    assert fresh.store.trials() == []
    fresh.close()


def test_failures_become_rows_in_one_place(tmp_path):
    store = Store(tmp_path)
    store.put_trial("c", "b1", "latency", "ok", throughput=1.0)
    record_failure(store, "c", {"b1": "latency", "b2": "latency", "dataset/sorted/b2": "corpus"},
                   "boom", first=True)
    trials = {t["point"]: t for t in store.trials()}
    assert trials["b1"]["status"] == "ok"  # what finished is kept
    assert (trials["b2"]["status"], trials["b2"]["error"]) == ("failed", "boom")
    assert trials["dataset/sorted/b2"]["kind"] == "corpus"
    assert store.results()["c"]["status"] == "failed"
    # The phase that judges a candidate marks one not yet judged as failed there.
    store.put_result("t", "ok", one_time={"first_step_s": 1.0})
    record_failure(store, "t", {"converge": "converge"}, "killed", verdict="converging")
    result = store.results()["t"]
    assert result["passed"] is False and result["gate_reason"] == "failed while converging: killed"
    assert result["one_time"] == {"first_step_s": 1.0}
    store.close()


def test_a_child_that_dies_gets_its_rows_from_the_engine(tmp_path):
    e = engine(tmp_path, infer_settings())
    ran = e.launch("torch/eager/fp32", "screen", ["b1/s16"], first=True)
    reason = ran.reason
    assert ran.failed and "exited with code 1" in reason and "No module named" in reason
    assert e.store.results()["torch/eager/fp32"]["error"] == reason
    assert [(t["point"], t["kind"], t["status"]) for t in e.store.trials()] == [
        ("b1/s16", "latency", "failed")]
    e.close()


def test_a_study_of_a_version_before_the_previous_one_is_refused_in_one_sentence(tmp_path):
    db = sqlite3.connect(tmp_path / "study.sqlite")
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE candidates (name TEXT PRIMARY KEY, position INTEGER, passes TEXT,
            runtime TEXT, settings TEXT, skipped_reason TEXT);
        CREATE TABLE results (candidate TEXT PRIMARY KEY, status TEXT NOT NULL, error TEXT,
            fidelity TEXT, passed INTEGER, gate_reason TEXT, one_time TEXT, size_bytes INTEGER,
            notes TEXT, finished REAL);
        CREATE TABLE trials (candidate TEXT NOT NULL, point TEXT NOT NULL, status TEXT NOT NULL,
            error TEXT, latency TEXT, throughput REAL, items INTEGER, peak_mb REAL,
            finished REAL, PRIMARY KEY (candidate, point));
        INSERT INTO meta VALUES ('schema_version', '1');
    """)
    db.close()
    with pytest.raises(HastenError) as caught:
        Store(tmp_path)
    assert ("written by another version of hasten (schema version 1; this one reads schema "
            f"version {SCHEMA_VERSION})") in str(caught.value)

"""The training study's resume record: what it decided so far, read and kept by name."""

from __future__ import annotations

from hasten.store import Store
from hasten.train.state import TrainState


def test_a_new_study_has_decided_nothing_and_needs_its_audit(tmp_path):
    state = TrainState.read(Store(tmp_path).meta)
    assert state == TrainState() and state.needs_audit() and state.audit_verdict() is None
    assert not state.combined_decided


def test_none_combined_is_a_decision_and_survives_a_resume(tmp_path):
    store = Store(tmp_path)
    state = TrainState.read(store.meta)
    state.combined_decided = True
    state.save(store, "combined")
    again = TrainState.read(store.meta)
    assert again.combined is None and again.combined_decided
    state.combined = "bf16-mixed/compile"
    state.save(store, "combined")
    assert TrainState.read(store.meta).combined == "bf16-mixed/compile"
    store.close()


def test_an_audit_cut_by_the_budget_runs_again_and_a_failed_one_does_not(tmp_path):
    store = Store(tmp_path)
    state = TrainState.read(store.meta)
    state.audit = {"error": "the time budget was spent", "cut": True}
    assert state.needs_audit() and state.audit_verdict() is None
    state.audit = {"error": "the audit's process crashed"}
    assert not state.needs_audit() and state.audit_verdict() is None
    store.set_meta("audit", {"verdict": "bf16 is safe", "confirm": []})
    read = TrainState.read(store.meta)
    assert not read.needs_audit() and read.audit_verdict()["verdict"] == "bf16 is safe"
    # A study's views read the same record from its meta dict.
    assert TrainState.read({"too_slow": {"16-mixed": "why"}}.get).too_slow == {
        "16-mixed": "why"}
    store.close()

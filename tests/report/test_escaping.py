"""Every string a study holds reaches the HTML reports escaped: an inference study, a training
study and both comparison pages whose error reasons, notes, candidate names, model names and
specs, machine descriptions, batch-size search figures and training fields carry markup render
without one element, attribute or script end of the markup's own."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser

import pytest
from test_train_html import real_study

from hasten import Study
from hasten.report import html, train_html
from hasten.report.compare import compare, compare_types, render_html, render_types_html
from hasten.store import Store
from hasten.train.study import TrainStudy

PAYLOADS = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "</script>")


def evil(field: str) -> str:
    """The value injected into one field: the field's name, to find it on the page, then every
    payload."""
    return f"[{field}]" + "".join(PAYLOADS)


# A folder name cannot hold "/", so the study folders carry the payloads without it.
FOLDER = evil("folder").replace("/", "")
INFER_FIELDS = ("model", "cpu", "host", "gpu", "library", "flag", "error", "note", "name",
                "gate", "skipped", "cut", "confirm")
TRAIN_FIELDS = ("model", "recipe", "batch size", "cpu", "host", "gpu", "library", "flag",
                "reason", "audit note", "audit error", "precision", "largest", "stopped",
                "probe batch", "probe error", "name", "gate", "skipped steps", "metric",
                "error", "diverged", "cut", "spec")


class _Page(HTMLParser):
    """A document as a browser reads it: its elements, their attribute names, and its text
    with character references decoded."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: set[str] = set()
        self.chunks: list[str] = []
        self.feed(document)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.update(name for name, _ in attrs)

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)


def assert_escaped(document: str, values: list[str]) -> None:
    """No payload made an element, an attribute or a script end, and each value is on the page
    as text, escaped exactly once."""
    page = _Page(document)
    assert not {"script", "img"} & set(page.tags)  # the pages have none of their own
    assert not [name for name in page.attributes if name.startswith("on")]
    assert [p for p in PAYLOADS if p in document] == []
    text = "".join(page.chunks)
    assert [v for v in values if v not in text] == []


def _machine(machine: dict) -> dict:
    """A machine whose description carries the payloads in every field a report shows."""
    return {**machine, "hostname": evil("host"), "cpu": evil("cpu"), "gpu": {"name": evil("gpu")},
            "flags": {**machine["flags"], evil("flag"): True},
            "libraries": {**machine["libraries"], "torch": evil("library")}}


def _rename(store: Store, old: str, new: str) -> None:
    """Rename a candidate in every table of a store."""
    for table, column in (("candidates", "name"), ("results", "candidate"),
                          ("trials", "candidate")):
        store.db.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", (new, old))


@pytest.fixture
def infer_study(study_at) -> Study:
    """The hand-written study with the payloads in its model name and spec, machine, a failed
    trial's error, a note, the faster candidate's name, a gate reason, a skip reason, a time
    budget's cut and a failed confirmation."""
    study = study_at(FOLDER, model=evil("model"), reason=evil("error"))
    store = Store(study.folder)
    store.set_meta("machine", _machine(store.meta("machine")))
    _rename(store, "fast", evil("name"))
    store.db.execute("UPDATE results SET notes = ? WHERE candidate = ?",
                     (json.dumps([evil("note")]), evil("name")))
    store.db.execute("UPDATE results SET gate_reason = ? WHERE candidate = 'wrong'",
                     (evil("gate"),))
    store.db.execute("UPDATE candidates SET skipped_reason = ? WHERE name = 'skipped'",
                     (evil("skipped"),))
    store.set_meta("budget", {"cut": {"later": evil("cut")}})
    confirmed = {"speedup": 2.0, "speedup_low": 1.9, "speedup_high": 2.1, "rounds": 3}
    store.set_meta("confirmation", {"results": {
        "b1/s16": {"error": evil("confirm")},
        "b8/s16": {"candidates": {study.baseline: {**confirmed, "speedup": 1.0},
                                  evil("name"): confirmed}}}})
    store.close()
    return Study(study.folder)


@pytest.fixture
def train_study(tmp_path_factory, tmp_path) -> TrainStudy:
    """A copy of the real training study with the payloads in its model name, recipe, batch
    size, machine, the audit's reasons, notes and a confirmation run's error, the batch-size
    search's precision, figures, stop reason and probe, and in candidates: a name (the
    fastest, so recommended and the search's winner), a gate reason, fp16 skipped steps, an
    eval metric's name, a failure, a divergence, a cut and a QAT model spec."""
    folder = tmp_path / FOLDER
    shutil.copytree(real_study(tmp_path_factory).folder, folder)
    store = Store(folder)
    config = store.meta("config")
    config["model"]["model"] = evil("model")
    config["recipe"] = f"/recipes/{evil('recipe')}.py"
    config["batch_size"] = evil("batch size")
    store.set_meta("config", config)
    store.set_meta("machine", _machine(store.meta("machine")))
    audit = store.meta("audit")
    audit["verdict"]["reasons"].append(evil("reason"))
    audit["verdict"]["notes"].append(evil("audit note"))
    audit["confirm"] = [{"precision": "bf16-weights", "error": evil("audit error"),
                         "passed": False} if run["precision"] == "bf16-weights" else run
                        for run in audit["confirm"]]
    store.set_meta("audit", audit)
    store.set_meta("batch_search", {
        **store.meta("batch_search"), "precision": evil("precision"), "largest": evil("largest"),
        "stopped": evil("stopped"), "candidate": evil("name"),
        "probes": [{"batch_size": evil("probe batch"), "fits": False, "memory_mb": 17.0,
                    "step_s": 0.001, "error": evil("probe error")}]})
    store.set_meta("budget", {"cut": {"bf16-mixed": evil("cut")}})
    half, fp32 = (next(t for t in store.trials() if (t["candidate"], t["point"]) == (name, "speed"))
                  for name in ("16-mixed", "32-true"))
    fidelity = store.results()["16-mixed"]["fidelity"]
    for i, (name, precision, switches) in enumerate((
            (evil("name"), "16-mixed", []), ("bf16-mixed", "bf16-mixed", []),
            ("bf16-true", "bf16-true", []), ("16-true", "16-true", []),
            ("32-true/qat-int8", "32-true", ["qat-int8"])), start=2):
        store.add_candidate(i, name, [], "fabric", {"precision": precision,
                                                    "switches": switches, "batch_size": None},
                            None)
    store.put_trial(evil("name"), "speed", "speed", "ok", latency=half["latency"],
                    throughput=fp32["throughput"] * 100, items=half["items"],
                    peak_mb=half["peak_mb"],
                    details={**half["details"], "skipped_steps": evil("skipped steps")})
    store.put_result(evil("name"), "ok", passed=True, gate_reason=evil("gate"), fidelity={
        **fidelity, "skipped_steps": evil("skipped steps"), "eval": {evil("metric"): 0.25}})
    store.put_result("bf16-true", "failed", error=evil("error"))
    store.put_result("16-true", "ok", passed=False, fidelity={**fidelity,
                                                             "diverged": evil("diverged")})
    store.put_result("32-true/qat-int8", "ok", passed=True, gate_reason="",
                     fidelity={**fidelity, "infer_spec": f"py:{evil('spec')}.py:build"})
    store.close()
    return TrainStudy(folder)


def test_the_inference_report_escapes_every_field(infer_study):
    assert_escaped(html.render(infer_study),
                   [FOLDER, *(evil(f) for f in INFER_FIELDS)])


def test_the_training_report_escapes_every_field(train_study):
    rows = {r["candidate"]: r for r in train_study.table()}
    assert rows[evil("name")]["status"] == "ok" and rows["16-true"]["status"] == "diverged"
    assert train_study.best("time")["candidate"] == evil("name")
    assert_escaped(train_html.render(train_study),
                   [FOLDER, *(evil(f) for f in TRAIN_FIELDS)])


def test_the_comparison_pages_escape_every_field(infer_study, study_at):
    plain = study_at("plain")
    shown = [FOLDER, *(evil(f) for f in ("model", "cpu", "gpu", "library", "flag", "name"))]
    assert_escaped(render_html(compare(infer_study, plain)), shown)
    store = Store(infer_study.folder)
    store.set_meta("machine_type", {"name": evil("machine type")})
    store.close()
    assert_escaped(render_types_html(compare_types([infer_study.folder, plain])),
                   [evil(f) for f in ("machine type", "cpu", "name")])


def test_the_check_finds_markup_that_was_not_escaped():
    """The check itself: a payload left raw in text or in an attribute is caught."""
    for document in (f"<p>{PAYLOADS[0]}</p>", f'<p title="{PAYLOADS[1]}">x</p>',
                     f"<p>{PAYLOADS[2]}</p>"):
        with pytest.raises(AssertionError):
            assert_escaped(document, [])

"""The generation study end to end on a tiny Llama-style decoder: every trial in its own
process, fidelity against fp32, the points timed, the leaders confirmed, the report written,
a second run resumed; bad settings as one sentence; a folder without weights refused unless
random weights are asked for, and then said."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from rich.console import Console
from test_cli import _one_error_line, hasten

from hasten import api
from hasten.errors import HastenError
from hasten.generate import backends
from hasten.generate.study import GenerateStudy
from hasten.report import generate as view

MENU = ("torch/eager/fp32", "torch/eager/attention-eager")


@pytest.fixture
def small_menu(monkeypatch):
    """The baseline and one eager variant only: the rest compile or convert for long."""
    every = backends.load_all()
    monkeypatch.setattr(backends, "load_all", lambda: {n: every[n] for n in MENU})


def _study(llama_dir, out, **changes):
    return api.optimize_inference(f"hf:{llama_dir}", **{
        "prompt_lengths": [16, 24], "new_tokens": 6, "batch_sizes": [1, 2], "out": out,
        "point_s": 0.2, "budget_s": math.inf, **changes})


@pytest.fixture(scope="module")
def finished(llama_dir, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        every = backends.load_all()
        patch.setattr(backends, "load_all", lambda: {n: every[n] for n in MENU})
        return _study(llama_dir, tmp_path_factory.mktemp("runs"))


def test_every_candidate_is_measured_at_every_point(finished):
    assert isinstance(finished, GenerateStudy) and finished.finished
    rows = {r["candidate"]: r for r in finished.table()}
    assert set(rows) == set(MENU)
    for row in rows.values():
        assert row["status"] == "ok" and row["passed"]
        assert set(row["points"]) == {"b1/p16", "b1/p24", "b2/p16", "b2/p24"}
        for figures in row["points"].values():
            assert figures["tpot"] > 0 and figures["ttft"] > 0 and figures["peak_mb"] >= 0
            assert figures["tokens_per_s"] > 0
    base = rows["torch/eager/fp32"]
    assert base["speedup"]["b1/p16"] == 1.0
    assert base["fidelity"]["perplexity_increase"] == 0 and base["fidelity"]["same_all"] == 1


def test_the_eager_attention_computes_what_sdpa_does(finished):
    row = next(r for r in finished.table() if r["candidate"] == "torch/eager/attention-eager")
    f = row["fidelity"]
    assert abs(f["perplexity_increase"]) < 1e-4 and f["top1_agreement"] > 0.99
    assert f["positions"] == 16 * 255  # 16 held-out windows of 256 tokens, teacher-forced
    assert "attention: eager" in row["notes"]


def test_the_leaders_are_confirmed_against_the_baseline(finished):
    results = finished.confirmation["results"]
    assert set(results) == {"b1/p16", "b2/p16"}
    for outcome in results.values():
        confirmed = outcome["candidates"]
        assert confirmed["torch/eager/fp32"]["speedup"] == 1.0
        assert confirmed["torch/eager/attention-eager"]["rounds"] == 5
    assert finished.best("latency")["candidate"] in MENU
    assert finished.best("size")["candidate"] in MENU


def test_the_report_and_the_json_say_the_same(finished):
    html = (finished.folder / "report.html").read_text()
    assert "torch/eager/attention-eager" in html and "perplexity" in html
    data = json.loads(json.dumps(finished.to_dict()))
    assert data["kind"] == "generate"
    assert data["recommendations"]["latency"] in MENU


def test_a_second_run_resumes_without_new_trials(finished, llama_dir, small_menu):
    before = {(t["candidate"], t["point"]): t["finished"] for t in finished.trials}
    again = _study(llama_dir, finished.folder.parent)
    assert {(t["candidate"], t["point"]): t["finished"] for t in again.trials} == before
    assert api.open_study(finished.folder).settings.kind == "generate"


@pytest.mark.parametrize(("changes", "message"), [
    ({"new_tokens": 0}, "`new_tokens` must be at least 1"),
    ({"prompt_lengths": [251]}, "attends to at most 256 positions"),
    ({"seq_lengths": [32]}, "`seq_lengths` does not apply"),
    ({"task": "feature-extraction", "prompt_lengths": [16]}, "`prompt_lengths` does not apply"),
])
def test_bad_settings_are_one_sentence(llama_dir, tmp_path, small_menu, changes, message):
    with pytest.raises(HastenError, match=message):
        _study(llama_dir, tmp_path, **changes)


@pytest.fixture(scope="module")
def random_study(llama_config_dir, tmp_path_factory):
    """The baseline alone on a decoder folder without weights, random weights asked for."""
    with pytest.MonkeyPatch.context() as patch:
        baseline = backends.load_all()[backends.BASELINE]
        patch.setattr(backends, "load_all", lambda: {backends.BASELINE: baseline})
        return _study(llama_config_dir, tmp_path_factory.mktemp("runs"), prompt_lengths=[16],
                      batch_sizes=[1], quick=True, random_weights=True)


def test_a_decoder_without_weights_is_refused_in_one_sentence(llama_config_dir, tmp_path):
    with pytest.raises(HastenError, match=r"holds no weights .*; save them there with "
                       "model.save_pretrained, or pass `random_weights`"):
        _study(llama_config_dir, tmp_path)
    line = _one_error_line(hasten("infer", "--model", f"hf:{llama_config_dir}", "--quick",
                                  "--out", str(tmp_path / "runs")))
    assert f"{llama_config_dir} holds no weights" in line and "--random-weights" in line
    assert not (tmp_path / "runs").exists()


def test_random_weights_asked_for_are_said_everywhere(random_study, tmp_path):
    assert random_study.finished and random_study.settings.model["has_weights"] is False
    console = Console(record=True, width=400)
    view.render(random_study, console)
    said = "Random weights: the model was built from its config with seeded random weights"
    assert console.export_text().splitlines()[1].startswith(said)
    html = (random_study.folder / "report.html").read_text()
    assert f'<p class="banner warn" id="random-weights">{said}' in html
    out = random_study.export(tmp_path / "fast", candidate=backends.BASELINE)
    assert json.loads((out / "candidate.json").read_text())["random_weights"] is True


@pytest.fixture(scope="module")
def tuned_study(llama_dir, tmp_path_factory):
    """The baseline and eager attention, which declares two tuned variants: sdpa again, and one
    thread."""
    with pytest.MonkeyPatch.context() as patch:
        every = backends.load_all()
        eager = dataclasses.replace(every["torch/eager/attention-eager"],
                                    tuned={"sdpa": {"attention": "sdpa"}, **backends.ONE_THREAD})
        menu = {backends.BASELINE: every[backends.BASELINE], eager.name: eager}
        patch.setattr(backends, "load_all", lambda: menu)
        out = tmp_path_factory.mktemp("runs")
        study = _study(llama_dir, out, prompt_lengths=[16], batch_sizes=[1])
        return study, _study(llama_dir, out, prompt_lengths=[16], batch_sizes=[1])


def test_tuned_variants_are_screened_measured_and_exported(tuned_study, tmp_path):
    study, again = tuned_study
    names = [c["name"] for c in study.candidates]
    one_thread = "torch/eager/attention-eager/1-thread"
    expected = ["torch/eager/attention-eager/sdpa"]
    if study.settings.threads > 1:  # on one thread, that variant is the candidate itself
        expected.append(one_thread)
    assert names[2:] == expected  # after the menu, each once
    settings = {c["name"]: c["settings"] for c in study.candidates}
    assert settings[expected[0]] == {"dtype": "fp32", "attention": "sdpa"}
    rows = {r["candidate"]: r for r in study.table()}
    for name in expected:
        assert rows[name]["status"] == "ok" and rows[name]["passed"], rows[name]
    assert abs(rows[expected[0]]["fidelity"]["perplexity_increase"]) < 1e-6
    assert [c["name"] for c in again.candidates] == names  # resumed: registered once
    out = study.export(tmp_path / "fast", candidate=expected[-1])
    recipe = json.loads((out / "candidate.json").read_text())
    assert recipe["candidate"] == expected[-1]
    assert recipe["threads"] == backends.threads_of(settings[expected[-1]],
                                                    study.settings.threads)
    assert f"threads = {recipe['threads']}\n" in (out / "load.py").read_text()


def test_an_unconfirmed_lead_within_the_noise_is_not_recommended(finished, monkeypatch):
    """Time to first token is never confirmed: a candidate whose lead over the baseline is
    within either side's spread does not displace it; one beyond it does."""
    at = finished.objective_point("ttft")

    def rows(eager_ttft: float) -> list[dict]:
        points = {"torch/eager/fp32": {"ttft": 10.0, "ttft_iqr": 0.5, "tpot": 1.0},
                  "torch/eager/attention-eager": {"ttft": eager_ttft, "ttft_iqr": 0.3,
                                                  "tpot": 1.0}}
        return [{"candidate": n, "status": "ok", "passed": True, "points": {at: p}}
                for n, p in points.items()]

    monkeypatch.setattr(finished, "table", lambda: rows(9.7))
    assert finished.best("ttft")["candidate"] == "torch/eager/fp32"
    monkeypatch.setattr(finished, "table", lambda: rows(9.0))
    assert finished.best("ttft")["candidate"] == "torch/eager/attention-eager"

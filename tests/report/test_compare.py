"""compare: two stored studies matched by candidate and point, ratios, spread, differences."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

import hasten
from hasten.errors import HastenError
from hasten.report.compare import render_html, render_terminal


def test_two_machines_twice_as_fast(study_at):
    a = study_at("a")
    b = study_at("b", scale=0.5, cpu="Other CPU")
    result = hasten.compare(a.folder, b.folder)
    assert result.labels == ("a", "b")
    # fast, the baseline and wrong at 4 latency points each, two with dataset passes.
    assert len(result.matched) == 3 * 4 + 2 * 2
    assert {m["candidate"] for m in result.matched} == {"fast", "torch/eager/fp32", "wrong"}
    for m in result.matched:
        assert m["ratio"] == pytest.approx(0.5)
        assert m["beyond_spread"] is True
    fast = next(m for m in result.matched if (m["candidate"], m["point"]) == ("fast", "b8/s32"))
    assert fast["p50"] == pytest.approx((64.0, 32.0))
    assert fast["iqr"] == pytest.approx((1.28, 0.64))
    assert result.machine_differences == ["CPU: Test CPU vs Other CPU"]
    assert result.setting_differences == []
    assert result.only == {"a": [], "b": []}


def test_a_difference_within_the_spread_is_not_claimed(study_at):
    result = hasten.compare(study_at("a"), study_at("b", scale=1.01))
    assert all(m["beyond_spread"] is False for m in result.matched)
    assert result.machine_differences == []


def test_different_models_and_workloads_are_named(study_at):
    a = study_at("a", model="bert")
    b = study_at("b", model="minilm", batch_sizes=(1, 4), finished=False)
    result = hasten.compare(a, b)
    assert "model: bert vs minilm" in result.setting_differences
    assert "batch sizes: [1, 8] vs [1, 4]" in result.setting_differences
    assert {m["point"] for m in result.matched} == {"b1/s16", "b1/s32"}
    assert result.only == {"a": [], "b": []}
    out = io.StringIO()
    render_terminal(result, Console(file=out, width=200))
    text = out.getvalue()
    assert "Warning: The studies differ in what they measured: model: bert vs minilm" in text
    assert "(not finished)" in text
    document = render_html(result)
    assert 'id="partial"' in document and "b has not finished" in document


def test_same_folder_names_are_told_apart_by_path(tmp_path, study_at):
    a = study_at("x/demo")
    b = study_at("y/demo")
    assert hasten.compare(a, b).labels == (str(a.folder), str(b.folder))


def test_terminal_and_html(study_at):
    result = hasten.compare(study_at("a"), study_at("<b>", scale=0.5, cpu="Other CPU"))
    out = io.StringIO()
    render_terminal(result, Console(file=out, width=200))
    text = out.getvalue()
    assert "Warning: The machines differ" in text and "Test CPU vs Other CPU" in text
    assert "0.50x" in text and "64.0" in text and "32.0" in text and "yes" in text
    document = render_html(result)
    assert "<b>" not in document and "&lt;b&gt;" in document
    assert 'data-plot="ratios" data-has-data="true"' in document
    assert document.count("Other CPU") >= 2  # the warning and the second machine card


def test_compare_needs_study_folders(tmp_path, study_at):
    with pytest.raises(HastenError, match="not a hasten study folder"):
        hasten.compare(study_at("a"), tmp_path / "nothing")


def test_compare_tells_two_image_folders_apart(image_study_at):
    a = image_study_at("a", ["a/1.png", "b/2.png"])
    b = image_study_at("b", ["a/1.png", "b/3.png"])
    assert "corpus: same size, different data" in hasten.compare(a, b).setting_differences

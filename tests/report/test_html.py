"""The HTML report: sections and numbers, escaping, failed and partial studies, empty plots,
and the report written at the end of every study."""

from __future__ import annotations

import re

import pytest

import hasten
from hasten.errors import HastenError
from hasten.report import write_report
from hasten.report.plots import RC

PLOTS = ("latency-batch", "latency-length", "dataset", "frontier", "memory", "one-time")


def _plots(document: str) -> dict[str, bool]:
    return {m[1]: m[2] == "true" for m in re.finditer(
        r'<figure class="plot" id="plot-[^"]+" data-plot="([^"]+)" data-has-data="(\w+)"',
        document)}


def test_report_of_a_study_with_failures(study_at):
    study = study_at()
    path = write_report(study)
    assert path == study.folder / "report.html"
    document = path.read_text()
    for section in ("recommendations", "ranking", "plots", "notes", "machine"):
        assert f'<section id="{section}">' in document
    assert _plots(document) == dict.fromkeys(PLOTS, True)
    for plot in PLOTS:  # every plot drew tagged data series
        assert re.search(rf'id="{plot}-data-[\w-]+"', document), plot
    assert "2.50x" in document  # fast against the baseline at b8/s32: 80 ms / 32 ms
    assert "the trial process was killed by SIGSEGV" in document
    assert "not on this CPU" in document and "pooled cosine 0.5000 &lt; 0.9900" in document
    assert 'class="status-failed">failed' in document
    assert "hasten export" in document and "Test CPU" in document
    assert 'id="partial"' not in document
    assert "http://" not in document.replace("http://www.w3.org/", "")
    assert "https://" not in document and "<script" not in document


def test_every_model_and_user_string_is_escaped(study_at):
    evil = "<script>alert('x')</script>"
    study = study_at(model=evil, reason=f'<img src=x onerror="boom()"> {evil}')
    document = write_report(study).read_text()
    assert "<script" not in document and "<img" not in document
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in document
    assert "&lt;img src=x onerror=&quot;boom()&quot;&gt;" in document


def test_dollar_signs_are_not_tex(study_at):
    assert RC["text.parse_math"] is False
    assert "a $x$ b" in write_report(study_at(model="a $x$ b")).read_text()


def test_a_running_study_gets_a_partial_report(study_at):
    document = write_report(study_at(finished=False)).read_text()
    assert 'id="partial"' in document and "Partial report" in document
    assert "3 of 5 runnable candidates have results" in document
    assert _plots(document) == dict.fromkeys(PLOTS, True)


def test_a_study_with_nothing_measured_says_so_in_every_plot(study_at):
    document = write_report(study_at(finished=False, measured=False)).read_text()
    assert _plots(document) == dict.fromkeys(PLOTS, False)
    assert document.count('class="empty"') == len(PLOTS)
    assert "0 of 5 runnable candidates have results" in document


def test_report_to_another_path(study_at, tmp_path):
    path = write_report(study_at(), tmp_path / "elsewhere" / "r.html")
    assert path.is_file() and not (tmp_path / "study" / "report.html").exists()


def test_the_study_writes_its_report(tiny_study):
    document = (tiny_study.folder / "report.html").read_text()
    assert _plots(document) == dict.fromkeys(PLOTS, True)
    assert "tiny-bert" in document and 'id="partial"' not in document
    confirmed = re.search(r'<section id="confirmation">.*?</section>', document, re.S).group(0)
    assert "alternating rounds" in confirmed and confirmed.count("<tr>") > 2


def test_no_report_when_asked(tmp_path, cnn_spec, only_candidates):
    only_candidates("torch/eager/fp32")
    study = hasten.optimize_inference(cnn_spec, batch_sizes=[1], quick=True, out=tmp_path,
                                      name="cnn", report=False)
    assert study.finished and not (study.folder / "report.html").exists()


def test_a_failing_baseline_still_gets_a_report(tmp_path, crash_file, crash_in_children,
                                                 only_candidates):
    only_candidates("torch/eager/fp32")
    with pytest.raises(HastenError, match="baseline"):
        hasten.optimize_inference(f"py:{crash_file}:build_always", batch_sizes=[1],
                                  quick=True, out=tmp_path, name="crash")
    document = (tmp_path / "crash" / "report.html").read_text()
    assert "SIGSEGV" in document and 'id="partial"' in document



def test_an_image_study_says_why_it_has_no_lengths(image_study_at):
    document = write_report(image_study_at("study", ["a/1.png", "b/2.png"])).read_text()
    assert "This model takes images, not sequences: no lengths to vary." in document
    assert ("This model takes images: there is no length to sort them by, so the study makes "
            "no dataset pass.") in document
    assert "texts)" not in document

"""The reports in a real browser: headless Chromium opens them offline, logs no error,
fetches nothing, runs no injected script, and every plot drew its data.

Without /usr/bin/chromium these tests skip, unless HASTEN_REQUIRE_BROWSER is set (CI sets it),
in which case they fail."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_train_html import EVIL_NAME, PLOTS, nothing_measured, real_study, with_markup

from hasten.report import write_report
from hasten.report.compare import compare, render_html
from hasten.report.html import write

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# For each figure: its id, whether it claims data, how many tagged data marks have a visible
# size, and whether it holds an SVG or the sentence for an empty plot.
PLOTS_JS = """() => [...document.querySelectorAll('figure.plot')].map(f => ({
  id: f.dataset.plot, hasData: f.dataset.hasData === 'true',
  marks: [...f.querySelectorAll(`svg [id^="${f.dataset.plot}-data"]`)].filter(g => {
    const box = g.getBBox(); return box.width > 0 || box.height > 0; }).length,
  svg: f.querySelector('svg') !== null, empty: f.querySelector('p.empty') !== null }))"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium (Debian's) driven by Playwright, with a fresh profile."""
    if not CHROMIUM.exists():
        if os.environ.get("HASTEN_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing and HASTEN_REQUIRE_BROWSER is set.")
        pytest.skip(f"{CHROMIUM} is missing; install Debian's chromium package.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("profile"), executable_path=str(CHROMIUM), args=FLAGS,
            headless=True)
        yield context
        context.close()


def _open(browser, path: Path) -> tuple[object, list[dict]]:
    """Open a report; fail on any console error, page error or request beyond the file."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: problems.append(f"request: {r.url}")
            if r.url != path.resolve().as_uri() else None)
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    plots = page.evaluate(PLOTS_JS)
    assert problems == [], problems
    return page, plots


def test_a_real_study_report(browser, tiny_study, tmp_path):
    # Written beside the test, not into the tiny study that the session's workers share.
    page, plots = _open(browser, write_report(tiny_study.study, tmp_path / "report.html"))
    assert [p["id"] for p in plots] == ["latency-batch", "latency-length", "dataset",
                                        "frontier", "memory", "one-time"]
    for plot in plots:
        assert plot["hasData"] and plot["svg"] and plot["marks"] > 0, plot
    for section in ("recommendations", "ranking", "plots", "machine"):
        assert page.locator(f"section#{section}").is_visible()
    assert page.locator("#ranking tbody tr").count() == len(tiny_study.study.candidates)
    page.close()


def test_injected_markup_stays_text(browser, study_at):
    evil = "<script>window.injected = 1</script>"
    study = study_at(model=evil, reason=f'<img src=x onerror="window.injected = 2"> {evil}')
    page, plots = _open(browser, write_report(study))
    assert page.evaluate("() => window.injected") is None
    assert page.locator("h1").inner_text() == evil
    assert all(p["hasData"] and p["marks"] > 0 for p in plots)
    page.close()


def test_a_study_without_data_shows_sentences(browser, study_at):
    page, plots = _open(browser, write_report(study_at(finished=False, measured=False)))
    assert page.locator("#partial").is_visible()
    for plot in plots:
        assert not plot["hasData"] and not plot["svg"] and plot["empty"], plot
    page.close()


def test_a_comparison(browser, study_at, tmp_path):
    result = compare(study_at("a"), study_at("b", scale=0.5, cpu="Other CPU"))
    page, plots = _open(browser, write(render_html(result), tmp_path / "compare.html"))
    assert plots[0]["id"] == "ratios" and plots[0]["marks"] > 0
    assert page.locator("#matched tbody tr").count() == len(result.matched)
    page.close()


def test_a_training_study_report(browser, tmp_path_factory, tmp_path):
    study = real_study(tmp_path_factory)
    page, plots = _open(browser, write_report(study, tmp_path / "train.html"))
    assert [p["id"] for p in plots] == list(PLOTS)
    for plot in plots:
        assert plot["hasData"] and plot["svg"] and plot["marks"] > 0, plot
    for section in ("recommendations", "precision", "ranking", "batch-search", "plots",
                    "machine"):
        assert page.locator(f"section#{section}").is_visible()
    assert page.locator("#ranking tbody tr").count() == len(study.table())
    assert page.locator("h1").inner_text() == f"Training study: {EVIL_NAME}.py"
    assert page.evaluate("() => window.injected") is None
    page.close()


def test_training_markup_stays_text(browser, tmp_path_factory, tmp_path):
    study = with_markup(real_study(tmp_path_factory), tmp_path / "evil")
    page, _ = _open(browser, write_report(study, tmp_path / "evil.html"))
    assert page.evaluate("() => window.injected") is None
    assert "<script>" in page.locator("#qat pre").inner_text()
    page.close()


def test_a_training_study_without_data_shows_sentences(browser, tmp_path_factory, tmp_path):
    study = nothing_measured(real_study(tmp_path_factory), tmp_path / "empty")
    page, plots = _open(browser, write_report(study, tmp_path / "empty.html"))
    assert page.locator("#partial").is_visible()
    for plot in plots:
        assert not plot["hasData"] and not plot["svg"] and plot["empty"], plot
    page.close()

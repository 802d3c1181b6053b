"""The training study's HTML report, from a real tiny study (fp32 and fp16 mixed precision,
audited, one batch-size probe) and copies of it with injected rows: sections, numbers that match
TrainStudy.table(), escaping, the partial banner and plots that say they have no data."""

from __future__ import annotations

import functools
import re
import shutil
import textwrap
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from hasten.options import TrainOptions
from hasten.report import write_report
from hasten.report.common import mb, ms
from hasten.report.train_html import render
from hasten.store import Store
from hasten.train.study import TrainStudy

PLOTS = ("loss", "speed-memory", "loss-scale", "batch-probes")
SECTIONS = ("recommendations", "precision", "ranking", "batch-search", "plots", "machine")
# A recipe file name a browser would run as markup if it were not escaped.
EVIL_NAME = 'tiny<img src=x onerror="window.injected=1">'
EVIL = '<script>window.injected = 2</script> & "quoted"'
RECIPE = textwrap.dedent(
    """
    import torch
    from torch import nn


    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3))


    def _data(n, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 16, generator=g)
        return torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long())


    def train_data():
        return _data(128, 0)


    def eval_data():
        return _data(64, 1)


    def loss(model, batch):
        x, y = batch
        return nn.functional.cross_entropy(model(x), y)


    def evaluate(model, batch):
        x, y = batch
        return {"accuracy": (model(x).argmax(1) == y).float().mean().item()}
    """
)


def real_study(factory: pytest.TempPathFactory) -> TrainStudy:
    """One real training study shared by this module and the browser test: fp32 and 16-mixed
    timed, fp32 trained for 10 steps and evaluated, the audit, and one batch-size probe that
    misses a 1 MiB budget. Each trial process costs seconds, so this is the whole run."""
    return _run_study(factory.getbasetemp() / "train-study")


@functools.cache
def _run_study(root: Path) -> TrainStudy:
    from hasten.train import candidates, run

    root.mkdir()
    recipe = root / f"{EVIL_NAME}.py"
    recipe.write_text(RECIPE)
    chosen = [(c, q) for c, q in candidates.menu() if c.name in ("32-true", "16-mixed")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(candidates, "menu", lambda: chosen)
        mp.setattr(run, "CONVERGE", 0)  # only fp32 and the precision modes train to the end
        return run.optimize_training(recipe, TrainOptions(
            steps=10, batch_size=8, point_s=0.3, memory_budget_mb=1, out=root / "runs",
            name="tiny"), report=write_report)


@pytest.fixture
def study(tmp_path_factory) -> TrainStudy:
    return real_study(tmp_path_factory)


@pytest.fixture
def copy_of(study, tmp_path):
    """A copy of the real study whose store a test may change; returns (Store, reopen)."""
    folder = tmp_path / "copy"
    shutil.copytree(study.folder, folder)
    store = Store(folder)
    yield store, lambda: TrainStudy(folder)
    store.close()


def with_markup(study: TrainStudy, folder: Path) -> TrainStudy:
    """A copy of the study with markup in an error, an audit reason, a probe's error, an eval
    metric's name, a gate reason and a QAT candidate's model spec."""
    shutil.copytree(study.folder, folder)
    store = Store(folder)
    store.put_result("16-mixed", "failed", error=EVIL)
    audit = store.meta("audit")
    audit["verdict"]["reasons"].append(EVIL)
    store.set_meta("audit", audit)
    search = store.meta("batch_search")
    search["probes"][0]["error"] = EVIL
    store.set_meta("batch_search", search)
    base = study.results["32-true"]
    store.add_candidate(99, "32-true/qat-int8", [], "fabric",
                        {"precision": "32-true", "switches": ["qat-int8"], "batch_size": None},
                        None)
    store.put_result("32-true/qat-int8", "ok", passed=True, gate_reason=EVIL, fidelity={
        **base["fidelity"], "eval": {EVIL: 0.5}, "infer_spec": f"py:/tmp/a b/{EVIL}.py:build"})
    store.close()
    return TrainStudy(folder)


def nothing_measured(study: TrainStudy, folder: Path) -> TrainStudy:
    """A study with the same settings and candidates that has measured nothing yet."""
    store = Store(folder)
    store.set_meta("config", study.config)
    store.set_meta("machine", study.machine)
    for i, c in enumerate(study.candidates):
        store.add_candidate(i, c["name"], [], "fabric", c["settings"], c["skipped_reason"])
    store.close()
    return TrainStudy(folder)


class _Tables(HTMLParser):
    """Every table's body rows as lists of cell text, keyed by the enclosing section's id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.section = ""
        self.row: list[str] | None = None
        self.body = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "section":
            self.section = dict(attrs)["id"]
        elif tag == "tbody":
            self.body = True
            self.tables[self.section] = []
        elif tag == "tr" and self.body:
            self.row = []
        elif tag == "td" and self.row is not None:
            self.row.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self.body = False
        elif tag == "tr" and self.row is not None:
            self.tables[self.section].append(self.row)
            self.row = None

    def handle_data(self, data: str) -> None:
        if self.row:
            self.row[-1] += data


def _tables(document: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(document)
    return parser.tables


def _plots(document: str) -> dict[str, bool]:
    return {m[1]: m[2] == "true" for m in re.finditer(
        r'<figure class="plot" id="plot-[^"]+" data-plot="([^"]+)" data-has-data="(\w+)"',
        document)}


def _section(document: str, name: str) -> str:
    return re.search(rf'<section id="{name}">(.*?)</section>', document, re.S)[1]


def test_the_study_writes_a_full_report(study):
    document = (study.folder / "report.html").read_text()
    assert document == render(study)
    for section in SECTIONS:
        assert f'<section id="{section}">' in document
    assert _plots(document) == dict.fromkeys(PLOTS, True)
    for plot in PLOTS:  # every plot drew tagged data series
        assert re.search(rf'id="{plot}-data-[\w-]+"', document), plot
    assert 'id="partial"' not in document
    assert "http://" not in document.replace("http://www.w3.org/", "")
    assert "https://" not in document and "<script" not in document and "<img" not in document
    assert "tiny&lt;img src=x onerror=&quot;window.injected=1&quot;&gt;.py" in document
    assert "2^16" in document  # the fp16 loss scale's axis, in plain text


def test_ranked_numbers_match_the_table(study):
    rows = study.table()
    cells = _tables(render(study))["ranking"]
    assert [c[0] for c in cells] == [r["candidate"] for r in rows]
    for row, got in zip(rows, cells, strict=True):
        speed = row["speed"]
        assert got[1] == row["status"]
        assert got[2:7] == [f"{ms(speed['p50'])} / {ms(speed['iqr'])}",
                            f"{row['samples_per_s']:,.0f}", f"{row['speedup']:.2f}x",
                            f"{speed['first_step_s']:.2f}", f"{speed['data_wait']:.0%}"]
        assert got[7] == f"{mb(row['peak_mb'])} ({row['memory_ratio']:.2f}x)"
        assert got[-1] == row["reason"]
    base, fp16 = (next(r for r in rows if r["candidate"] == n) for n in ("32-true", "16-mixed"))
    got = {c[0]: c for c in cells}
    # fp32 trained with several seeds: the accuracy shown is their mean, with their range.
    runs = [r["eval"]["accuracy"] for r in base["converge"]["runs"]]
    assert len(runs) > 1
    assert got["32-true"][8:11] == [
        f"{base['converge']['final_loss']:.4g}",
        f"accuracy {sum(runs) / len(runs):.4f} ({len(runs)} runs {min(runs):.4f}-"
        f"{max(runs):.4f})", "-"]
    # Every precision mode trains to the end; 16-mixed also shows its scaler's skipped steps.
    # A mode that fp32's spread could not tell apart trained with more seeds, shown alike.
    runs16 = [r["eval"]["accuracy"] for r in fp16["converge"].get("runs") or []]
    accuracy = (f"accuracy {sum(runs16) / len(runs16):.4f} ({len(runs16)} runs "
                f"{min(runs16):.4f}-{max(runs16):.4f})" if len(runs16) > 1 else
                f"accuracy {fp16['converge']['eval']['accuracy']:.4f}")
    assert got["16-mixed"][8:11] == [f"{fp16['converge']['final_loss']:.4g}", accuracy,
                                     str(fp16["converge"]["skipped_steps"])]


def test_recommendations_and_the_plain_fp32_sentence(study):
    document = render(study)
    section = _section(document, "recommendations")
    best = study.recommendations()["time"]
    assert best is not None and f"<code>{best['candidate']}</code>" in section
    assert f"{best['samples_per_s']:,.0f} ({best['speedup']:.2f}x 32-true)" in section
    assert f"{mb(best['peak_mb'])} MiB ({best['memory_ratio']:.2f}x 32-true)" in section
    plain = "fp32 (32-true) is the fastest configuration that keeps accuracy here"
    assert (plain in section) == (best["candidate"] == "32-true")
    # Each recommendation shows the exact lines that set it up, whichever candidate won here.
    for row in filter(None, study.recommendations().values()):
        code = escape("\n".join(row["code"]))
        assert f'<pre class="scroll"><code>{code}</code></pre>' in section


def test_a_faster_candidate_is_recommended_with_its_code(copy_of):
    store, reopen = copy_of
    base = reopen().results["32-true"]
    speed = next(t for t in store.trials() if t["candidate"] == "16-mixed"
                 and t["point"] == "speed")
    store.put_trial("16-mixed", "speed", "speed", "ok", latency=speed["latency"],
                    items=speed["items"], throughput=1e9, peak_mb=1.0,
                    details=speed["details"])
    store.put_result("16-mixed", "ok", fidelity=base["fidelity"], passed=True,
                     gate_reason="accuracy as fp32's", one_time=base["one_time"])
    study = reopen()
    best = study.recommendations()["time"]
    assert best["candidate"] == "16-mixed"
    section = _section(render(study), "recommendations")
    assert "fastest configuration that keeps accuracy" not in section
    assert f"1,000,000,000 ({best['speedup']:.2f}x 32-true)" in section
    assert "MixedPrecision(&quot;16-mixed&quot;, &quot;cpu&quot;" in section  # code_lines
    accuracy = base["fidelity"]["eval"]["accuracy"]
    assert f"accuracy {accuracy:.4f} (fp32 {accuracy:.4f})" in section


def test_precision_modes_beside_the_audit(study):
    document = render(study)
    section = _section(document, "precision")
    verdict = study.audit["verdict"]
    assert f"chose <b>{verdict['choice']}</b>" in section
    for reason in verdict["reasons"]:
        assert escape(reason) in section
    cells = {c[0].split(" ")[0]: c for c in _tables(document)["precision"]}
    assert set(cells) == {"32-true", "16-mixed"}
    run = next(r for r in study.audit["confirm"] if r["precision"] == "fp16-autocast")
    assert cells["16-mixed"][-5:] == ["fp16-autocast", f"{run['loss_rel_diff']:.2e}",
                                      f"{run['grad_cosine']:.5f}",
                                      f"{run['grad_rel_error']:.2e}",
                                      "yes" if run["passed"] else "no"]
    assert cells["32-true"][-5] == "reference"


def test_batch_search_probes_and_why_it_stopped(study):
    document = render(study)
    search = study.batch_search
    assert search["stopped"] == "batch 16 does not fit the budget of 1 MiB"
    section = _section(document, "batch-search")
    assert f"stopped because {search['stopped']}" in section
    assert "largest batch that fits is <b>8</b>" in section
    assert "no batch-size candidate was added" in section
    probe = search["probes"][0]
    assert _tables(document)["batch-search"] == [
        ["16", "no", mb(probe["memory_mb"]), ms(probe["step_s"] * 1000), ""]]


def test_injected_strings_are_escaped(study, tmp_path):
    document = render(with_markup(study, tmp_path / "evil"))
    assert "<script" not in document and "<img" not in document
    escaped = "&lt;script&gt;window.injected = 2&lt;/script&gt; &amp; &quot;quoted&quot;"
    assert document.count(escaped) == 6  # two reasons, audit, probe, eval, infer_spec
    assert '<span class="status-failed">failed</span>' in document
    command = ("hasten infer --model &#x27;py:/tmp/a b/&lt;script&gt;window.injected = 2"
               "&lt;/script&gt; &amp; &quot;quoted&quot;.py:build&#x27;")
    assert command in _section(document, "qat")


def test_a_diverged_run_is_marked(copy_of):
    store, reopen = copy_of
    nan = float("nan")
    why = "the loss went nan at step 2"
    store.put_result("16-mixed", "ok", passed=False, gate_reason=f"diverged: {why}", fidelity={
        "steps": 3, "final_loss": nan, "first_loss": 1.1, "diverged": why, "nan_step": 2,
        "losses": [1.1, nan, nan], "scales": [65536.0, 32768.0, 16384.0], "skipped_steps": 2})
    document = render(reopen())
    row = next(c for c in _tables(document)["ranking"] if c[0] == "16-mixed")
    assert row[1] == "diverged" and row[-1] == why
    assert row[8:11] == ["nan", "-", "2"]
    assert re.search(r'id="loss-data-\d+-nan"', document)  # a cross where the loss went nan
    assert "16-mixed (convergence run, 2 skipped)" in document


def test_an_unfinished_study_gets_a_banner(copy_of):
    store, reopen = copy_of
    store.set_meta("finished", False)
    store.add_candidate(99, "bf16-true", [], "fabric",
                        {"precision": "bf16-true", "switches": [], "batch_size": None}, None)
    document = render(reopen())
    assert 'id="partial"' in document and "Partial report" in document
    assert "2 of 3 runnable candidates have results" in document
    assert _plots(document) == dict.fromkeys(PLOTS, True)


def test_a_study_with_nothing_measured_says_so(study, tmp_path):
    document = render(nothing_measured(study, tmp_path / "empty"))
    assert _plots(document) == dict.fromkeys(PLOTS, False)
    assert document.count('class="empty"') == len(PLOTS)
    for sentence in ("No candidate has trained for the study's steps yet",
                     "No candidate's speed has been measured yet.",
                     "No candidate ran with a loss scaler",
                     "The batch-size search has not run yet.",
                     "The numerics audit did not run for this study",
                     "No candidate has converged within the tolerance of fp32 yet.",
                     "0 of 2 runnable candidates have results"):
        assert escape(sentence) in document, sentence


def test_report_to_another_path(study, tmp_path):
    path = write_report(study, tmp_path / "elsewhere" / "train.html")
    assert path.read_text() == render(study)
    assert isinstance(path, Path)

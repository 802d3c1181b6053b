"""The training study end to end on tiny recipes: every candidate in its own process, the
batch-size search, a candidate that goes NaN, several processes, and bad recipes."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
import torch
from test_cli import _one_error_line, hasten

from hasten.api import optimize_training
from hasten.measure import memory_noise_mb
from hasten.train import candidates, run, runner
from hasten.train.candidates import HALF_MODES, combine
from hasten.train.families import TORCH
from hasten.train.outcome import SEEDS
from hasten.train.study import TrainStudy

# A small CNN with two repeated residual blocks and a linear head: every switch applies to it.
CNN_RECIPE = '''
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return x + torch.relu(self.conv(x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(8 * 8 * 8, 3)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return self.head(x.flatten(1))


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.3
    x[:, 0, :, :] += y.view(-1, 1, 1).float()
    return torch.utils.data.TensorDataset(x, y)


def model():
    return Net()


def train_data():
    return _data(256, 0)


def eval_data():
    return _data(96, 1)


def loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def evaluate(model, batch):
    x, y = batch
    return {"accuracy": (model(x).argmax(1) == y).float().mean().item()}
'''

# Fine in fp32 and bf16; the scaled input overflows fp16, so fp16 modes go NaN.
OVERFLOW_RECIPE = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 16)
        self.b = nn.Linear(16, 2)

    def forward(self, x):
        return self.b(torch.relu(self.a(x * 1e5))) * 1e-5


def model():
    return Net()


def train_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 4, generator=g)
    return torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())


def loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)
'''

# Each sample becomes a wide activation, so peak memory grows with the batch size.
WIDE_RECIPE = '''
import torch
from torch import nn


def model():
    return nn.Sequential(nn.Linear(32, 32768), nn.ReLU(), nn.Linear(32768, 2))


def train_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 32, generator=g)
    return torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())


def loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)
'''


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="module")
def cnn_study(tmp_path_factory) -> TrainStudy:
    """Every candidate of the study on the CNN recipe, run once for the tests below."""
    folder = tmp_path_factory.mktemp("cnn")
    recipe = write(folder, "cnn.py", CNN_RECIPE)
    return optimize_training(recipe, steps=12, batch_size=32, out=folder / "runs",
                             point_s=0.3, memory_budget_mb=64 * 1024, report=False)


def rows(study: TrainStudy) -> dict[str, dict]:
    return {r["candidate"]: r for r in study.table()}


def test_every_precision_mode_runs_or_says_why_not(cnn_study):
    table = rows(cnn_study)
    assert cnn_study.finished
    for mode in ("32-true", *HALF_MODES):
        row = table[mode]
        assert row["status"] in ("ok", "timed only", "outside tolerance", "diverged"), row
        # However slow the CPU runs this mode (fp16 is emulated without AVX512_FP16), the
        # runner times its minimum of steps.
        assert row["samples_per_s"] > 0 and row["speed"]["count"] >= runner.MIN_TIMED_STEPS
        assert row["peak_mb"] is not None and row["speed"]["peak_rss_mb"] > row["peak_mb"]
        assert len(row["speed"]["losses"]) >= 8
    # Pure fp16 weights with AdamW's eps of 1e-8: eps is 0 in fp16, and the study says so.
    assert table["16-true"]["status"] == "diverged"
    assert "eps (1e-08) is 0 in fp16" in table["16-true"]["reason"]
    assert table["32-true/tf32"]["status"] == "skipped"
    assert "GPU" in table["32-true/tf32"]["reason"]
    # fp16 autocast on a CPU runs through Fabric's plugin with a CPU GradScaler.
    scales = table["16-mixed"]["speed"]["scales"]
    assert scales and all(s > 0 for s in scales)
    assert table["32-true"]["speed"].get("scales") == []


def test_every_switch_runs_on_the_model_it_fits(cnn_study):
    table = rows(cnn_study)
    for name in ("32-true/compile", "bf16-mixed/compile", "32-true/checkpointing",
                 "32-true/accumulate-4", "32-true/adamw-foreach", "32-true/adamw-fused",
                 "32-true/adamw-8bit", "32-true/channels-last", "bf16-mixed/channels-last",
                 "32-true/workers-2", "32-true/workers-2-persistent", "32-true/qat-int8"):
        assert table[name]["status"] not in ("failed", "skipped", "pending"), table[name]
        assert table[name]["samples_per_s"] > 0
    assert table["32-true/compile"]["one_time"]["first_step_s"] > table["32-true/compile"][
        "speed"]["p50"] / 1000
    for name in ("32-true/attention-sdpa", "32-true/attention-eager", "32-true/pinned-memory"):
        assert table[name]["status"] == "skipped"
    assert cnn_study.config["model"]["checkpointing"] == "blocks: Block"


def test_convergence_is_checked_against_fp32_from_the_same_start(cnn_study):
    table = rows(cnn_study)
    base = table["32-true"]["converge"]
    assert base["steps"] == 12 and 0 <= base["eval"]["accuracy"] <= 1
    assert math.isfinite(base["final_loss"]) and base["final_loss"] < base["first_loss"]
    converged = [r for r in table.values() if r["converge"] and "final_loss" in r["converge"]]
    assert len(converged) >= 1 + run.CONVERGE
    for mode in ("16-mixed", "bf16-mixed", "bf16-true"):
        assert "final_loss" in table[mode]["converge"], mode
    for row in converged:
        # Same seed, same data order, same weights: the first loss matches fp32's closely.
        assert row["converge"]["first_loss"] == pytest.approx(base["first_loss"], rel=0.05)
        assert ("fp32" in row["reason"]) or row["status"] == "diverged"
    qat = table["32-true/qat-int8"]["converge"]
    assert qat["infer_spec"].startswith("py:") and "accuracy" in qat["eval"]


def test_fp32_and_the_recommendation_train_with_several_seeds(cnn_study):
    table = rows(cnn_study)
    runs = {t["point"] for t in cnn_study.trials
            if t["candidate"] == "32-true" and t["kind"] == "converge"}
    assert runs == {"converge", "converge-s1", "converge-s2"}
    assert table["32-true"]["metric"]["runs"] == SEEDS
    # Each run is its own seed: initialisation and data order differ, so the losses do.
    finals = {r["final_loss"] for r in table["32-true"]["converge"]["runs"]}
    assert len(finals) == SEEDS
    best = cnn_study.best("time")
    if not best["baseline"]:
        assert best["metric"]["runs"] == SEEDS
        # It beat fp32 by more than fp32's own run-to-run spread in samples/s.
        assert best["speedup"] > 1 + cnn_study.noise()["speed"]
    assert cnn_study.noise()["runs"] == 1 + SEEDS


def test_recommendation_names_fabric_and_code_lines(cnn_study):
    best = cnn_study.best("time")
    assert best is not None and best["status"] == "ok"
    assert any("Fabric(" in line and "precision=" in line or "plugins=" in line
               for line in best["code"])
    # For memory: of fp32 and the candidates lighter than it by more than fp32's run-to-run
    # spread, the fastest within the measurement's noise of the least.
    memory = cnn_study.best("memory")
    ok = [r for r in cnn_study.table() if r["status"] == "ok" and r["samples_per_s"]]
    base = next(r for r in ok if r["baseline"])
    bar = max(cnn_study.noise()["memory_mb"], memory_noise_mb(base["peak_mb"]))
    ok = [r for r in ok if r["baseline"] or r["peak_mb"] < base["peak_mb"] - bar]
    least = min(r["peak_mb"] for r in ok)
    close = [r for r in ok if r["peak_mb"] <= least + memory_noise_mb(least)]
    assert memory["peak_mb"] <= least + memory_noise_mb(least)
    assert memory["samples_per_s"] == max(r["samples_per_s"] for r in close)


def only(*names: str):
    """The training menu restricted to these candidates (candidates.menu's replacement)."""
    chosen = [(c, in_quick) for c, in_quick in candidates.menu() if c.name in names]
    return lambda: chosen


def test_a_study_resumes_without_rerunning(cnn_study, tmp_path):
    before = {t["candidate"] + t["point"]: t["finished"] for t in cnn_study.trials}
    again = optimize_training(cnn_study.config["recipe"], steps=12, batch_size=32,
                              out=cnn_study.folder.parent, point_s=0.3,
                              memory_budget_mb=64 * 1024, report=False)
    assert {t["candidate"] + t["point"]: t["finished"] for t in again.trials} == before


def test_a_candidate_that_goes_nan_is_reported_not_fatal(tmp_path, monkeypatch):
    keep = {"32-true", "16-true", "bf16-true"}
    monkeypatch.setattr(candidates, "menu", only(*keep))
    recipe = write(tmp_path, "overflow.py", OVERFLOW_RECIPE)
    study = optimize_training(recipe, steps=8, batch_size=16, out=tmp_path / "runs",
                              point_s=0.2, audit=False, report=False)
    table = rows(study)
    assert study.finished
    assert table["16-true"]["status"] == "diverged"
    assert "nan" in table["16-true"]["reason"].lower() or "inf" in table["16-true"]["reason"]
    assert table["32-true"]["status"] == "ok" and table["bf16-true"]["status"] != "diverged"
    assert study.best("time")["candidate"] != "16-true"


def test_batch_size_search_finds_the_largest_batch_under_the_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(candidates, "menu", only("32-true"))
    recipe = write(tmp_path, "wide.py", WIDE_RECIPE)
    # Each sample holds about half a MiB of activations and gradients, so the budget is
    # crossed at a few hundred samples, where a step is quick on any CPU.
    budget = 120.0
    study = optimize_training(recipe, steps=2, batch_size=64, out=tmp_path / "runs",
                              point_s=0.2, memory_budget_mb=budget, audit=False, report=False)
    search = study.batch_search
    probes = {p["batch_size"]: p for p in search["probes"]}
    largest = search["largest"]
    assert largest > 64 and probes[largest]["fits"] and probes[largest]["memory_mb"] <= budget
    misses = [p for p in search["probes"] if not p["fits"]]
    assert misses and all(p["batch_size"] > largest for p in misses)
    assert all(p["memory_mb"] > budget for p in misses if p["memory_mb"] is not None)
    assert "does not fit" in search["stopped"]
    # Memory grows with the batch size: the search measured it, it did not guess. (By how much
    # depends on the CPU's kernels and their workspaces, so only the order is checked.)
    measured = [p["memory_mb"] for p in search["probes"] if p["memory_mb"] is not None]
    assert len(measured) >= 2 and measured[-1] > measured[0]
    batch = rows(study)[search["candidate"]]
    assert batch["settings"]["batch_size"] == largest
    # Its learning rate follows the batch (the square-root rule for the recipe's AdamW), ramped
    # up from the recipe's, and the study says so.
    factor = math.sqrt(largest / 64)
    assert (f"learning rate {factor:.2f}x the recipe's for batch {largest} (from 64; the "
            "square-root rule for AdamW), ramped up over 1 step") in batch["notes"]


def test_the_time_budget_cuts_with_reasons_and_the_same_call_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(candidates, "menu", only("32-true", "32-true/adamw-fused"))
    recipe = write(tmp_path, "cnn.py", CNN_RECIPE)
    kwargs = dict(steps=4, batch_size=16, out=tmp_path / "runs", point_s=0.2,
                  memory_budget_mb=64 * 1024, report=False)
    study = optimize_training(recipe, budget_s=0.001, **kwargs)
    table = rows(study)
    spent = "the study's time budget of 0.001 s was spent; run the same command again"
    assert study.audit is None and study.audit_error.startswith(f"not audited: {spent}")
    # fp32's own timing and training are never cut: everything is compared with them.
    assert table["32-true"]["status"] == "ok"
    name = "32-true/adamw-fused"
    assert table[name]["status"] == "pending"
    assert table[name]["reason"].startswith(f"not timed: {spent}")
    assert table[name]["budget_cut"] == table[name]["reason"]
    # The batch-size search is cut too (its probes run fp32, but they are not fp32's baseline).
    assert not study.batch_search["finished"]
    assert study.batch_search["stopped"].startswith(
        f"batch 32: the batch-size search stopped here: {spent}")
    assert study.to_dict()["budget_s"] == 0.001
    before = {t["point"]: t["finished"] for t in study.trials if t["candidate"] == "32-true"}
    study = optimize_training(recipe, budget_s=math.inf, **kwargs)
    table = rows(study)
    assert {t["point"]: t["finished"] for t in study.trials
            if t["candidate"] == "32-true" and t["point"] in before} == before
    assert all(r["status"] != "pending" and not r["budget_cut"] for r in table.values()), table
    assert study.batch_search["finished"] and study.to_dict()["budget_s"] is None
    assert study.audit["verdict"] and study.audit_error is None


def test_a_run_stopped_at_what_the_budget_left_is_cut_not_failed(tmp_path):
    from types import SimpleNamespace

    from hasten.executors import Deadline, Ran, past_limit
    from hasten.store import Store

    store = Store(tmp_path)
    now = [0.0]
    deadline = Deadline(100.0, lambda: now[0], shares=run.SHARES)
    now[0] = 10.0
    launched = []

    def launch(name, phase, points, cap_s, **_):
        launched.append((name, phase, cap_s))
        return Ran(past_limit(cap_s), cut=True)

    engine = SimpleNamespace(store=store, settings=_settings(), launch=launch,
                             log=lambda _: None)
    launcher = run.Launcher(engine, deadline)
    why = launcher("32-true/compile", "converge", "final")
    assert launched == [("32-true/compile", "converge", 95.0 - 10)]
    assert why.startswith("timed, not trained to the end (stopped in its converge run): the "
                          "study's time budget of 100 s was spent")
    assert store.meta("budget") == {"seconds": 100.0, "cut": {"32-true/compile": why}}
    # A probe stopped by the budget ends the search; no candidate is marked for it.
    assert launcher("32-true", "probe-b64", "probe").startswith("the batch-size search")
    assert list(store.meta("budget")["cut"]) == ["32-true/compile"]
    store.close()


def test_two_processes_train_through_ddp_on_gloo(tmp_path, monkeypatch):
    monkeypatch.setattr(candidates, "menu", only("32-true"))
    recipe = write(tmp_path, "cnn.py", CNN_RECIPE)
    study = optimize_training(recipe, steps=6, batch_size=16, devices=2, out=tmp_path / "runs",
                              point_s=0.2, memory_budget_mb=1.0, audit=False, report=False)
    base = rows(study)["32-true"]
    assert base["status"] == "ok"
    assert base["speed"]["count"] == 10
    assert base["samples_per_s"] == pytest.approx(32 / (base["speed"]["p50"] / 1000))
    log = (study.folder / "logs" / "32-true.speed.log").read_text()
    assert "gloo" in log and "2 processes" in log


@pytest.mark.parametrize(("body", "expected"), [
    ("def model():\n    return 1\n", "no train_data(), loss()"),
    (CNN_RECIPE.replace("return nn.functional.cross_entropy(model(x), y)",
                        "return model(x)"), "must return a scalar tensor"),
    (CNN_RECIPE.replace("x = torch.randn(n, 1, 8, 8", "x = torch.randn(n, 1, 6, 6"),
     "loss() failed"),
    (CNN_RECIPE.replace("return _data(256, 0)", "return _data(0, 0)"), "empty dataset"),
])
def test_bad_recipes_are_one_sentence(tmp_path, body, expected):
    recipe = write(tmp_path, "bad.py", body)
    line = _one_error_line(hasten("train", str(recipe), "--out", str(tmp_path / "runs")))
    assert expected in line


def test_bad_settings_are_one_sentence(tmp_path):
    recipe = write(tmp_path, "cnn.py", CNN_RECIPE)
    line = _one_error_line(hasten("train", str(recipe), "--memory-budget", "lots"))
    assert "4GiB" in line
    line = _one_error_line(hasten("train", str(recipe), "--batch-size", "1000"))
    assert "fewer than one batch" in line
    line = _one_error_line(hasten("train", str(tmp_path / "missing.py")))
    assert "No recipe file" in line


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_precision_modes_with_grad_scaler(tmp_path, monkeypatch):
    keep = {"32-true", "32-true/tf32", "16-mixed", "bf16-mixed", "32-true/pinned-memory"}
    monkeypatch.setattr(candidates, "menu", only(*keep))
    recipe = write(tmp_path, "cnn.py", CNN_RECIPE)
    study = optimize_training(recipe, steps=8, batch_size=32, device="cuda",
                              out=tmp_path / "runs", point_s=0.3, audit=False, report=False)
    table = rows(study)
    assert all(table[n]["status"] not in ("failed", "pending") for n in keep), table
    assert table["16-mixed"]["speed"]["scales"] and "peak_gpu_mb" in table["32-true"]["speed"]


def test_report_and_export_commands_on_a_training_study(cnn_study):
    proc = hasten("report", str(cnn_study.folder))
    assert proc.returncode == 0, proc.stderr
    page = (cnn_study.folder / "report.html").read_text()
    assert "Training study: cnn.py" in page and "32-true/adamw-fused" in page
    line = _one_error_line(hasten("export", str(cnn_study.folder)))
    assert "training study" in line


def test_combine_takes_one_switch_of_each_kind():
    by_name = {c.name: c for c, _ in candidates.menu()}
    winners = [by_name[n] for n in ("32-true/adamw-fused", "32-true/channels-last",
                                    "32-true/workers-2-persistent", "32-true/compile")]
    c = combine("bf16-mixed", winners)
    assert c.name == "bf16-mixed/adamw-fused+channels-last+workers-2-persistent+compile"
    assert c.precision == "bf16-mixed"
    assert c.switches == ("adamw-fused", "channels-last", "workers-2-persistent", "compile")
    assert c.accumulation == 1 and not c.converges
    assert by_name["32-true/accumulate-4"].accumulation == 4
    assert by_name["32-true/qat-int8"].converges and by_name["32-true/length-grouped"].converges
    assert TORCH.speed_group(by_name["32-true/accumulate-4"]) is None
    assert TORCH.speed_group(by_name["32-true/checkpointing"]) is None
    assert TORCH.speed_group(by_name["32-true/attention-eager"]) == "attention"


def test_the_combined_candidate_builds_on_a_passing_mode(cnn_study):
    table = rows(cnn_study)
    if cnn_study.combined is None:
        # No speed-only switch beat fp32 by 5% on its own in this run: nothing to combine.
        return
    row = table[cnn_study.combined]
    assert table[row["settings"]["precision"]]["status"] == "ok"
    assert "final_loss" in row["converge"]
    for switch in cnn_study.combined.split("/", 1)[1].split("+"):
        assert table[f"32-true/{switch}"]["speedup"] > 1.05


def test_a_precision_mode_too_slow_to_win_is_not_trained_to_the_end(monkeypatch):
    import dataclasses

    from hasten import machine

    monkeypatch.setattr(machine, "native_half", lambda dtype: dtype == "bf16")
    settings = _settings(steps=60, batch_size=16)
    # fp32 at 28 samples/s; 16-mixed 18x slower would train 960 samples in 10 minutes.
    speeds = {"32-true": 28.0, "16-mixed": 1.56, "bf16-mixed": 20.0, "bf16-true": 8.0}
    slow = run._too_slow(speeds, settings)
    assert list(slow) == ["16-mixed"]
    assert slow["16-mixed"].startswith("not trained to the end: it ran at 0.06x fp32's samples "
                                       "per second here (this CPU only emulates fp16)")
    # bf16-true is 4.7x slower too, but native here: no emulation is claimed.
    speeds["bf16-true"] = 1.0
    assert "emulates" not in run._too_slow(speeds, settings)["bf16-true"]
    # A short convergence run is worth its time however slow the mode: tiny models keep it.
    assert run._too_slow(speeds, dataclasses.replace(settings, steps=2)) == {}


def test_candidates_in_an_emulated_half_type_are_timed_last_when_steps_are_slow(monkeypatch):
    from hasten import machine

    menu = {c.name: c for c, _ in candidates.menu()}
    monkeypatch.setattr(machine, "native_half", lambda dtype: dtype == "bf16")
    # fp32 at 0.5 s a step: an emulated fp16 step would take over a second.
    order = run.speed_order(menu, _settings(), 0.5)
    fp16 = [n for n in order if menu[n].precision in ("16-mixed", "16-true")]
    assert order[0] == "32-true" and fp16 and order[-len(fp16):] == fp16
    assert [n for n in order if n not in fp16] == [n for n in menu if n not in fp16]
    # Quick steps (10 ms), fp32 not timed yet, a CPU that computes both half types, or a GPU:
    # the menu's order stands.
    assert run.speed_order(menu, _settings(), 0.01) == list(menu)
    assert run.speed_order(menu, _settings(), None) == list(menu)
    monkeypatch.setattr(machine, "native_half", lambda dtype: True)
    assert run.speed_order(menu, _settings(), 0.5) == list(menu)
    monkeypatch.setattr(machine, "native_half", lambda dtype: False)
    assert run.speed_order(menu, _settings(device="cuda"), 0.5) == list(menu)


def test_only_candidates_that_beat_fp32_on_speed_or_memory_train_to_the_end(tmp_path):
    from hasten.store import Store
    from hasten.train.candidates import TrainCandidate

    store = Store(tmp_path)
    made = {"32-true": TrainCandidate("32-true"), "bf16-mixed": TrainCandidate("bf16-mixed")}
    for switch in ("adamw-fused", "adamw-foreach", "channels-last", "compile", "workers-2",
                   "checkpointing", "attention-eager", "qat-int8"):
        made[f"32-true/{switch}"] = TrainCandidate("32-true", (switch,))
    # samples/s and MiB: four beat fp32's speed, one its memory, two neither; QAT is slower
    # but always trains to the end (its int8 accuracy is the point).
    figures = {"32-true": (100, 500), "bf16-mixed": (150, 400),
               "32-true/adamw-fused": (120, 500), "32-true/adamw-foreach": (110, 500),
               "32-true/channels-last": (105, 500), "32-true/compile": (101, 500),
               "32-true/workers-2": (90, 510), "32-true/checkpointing": (70, 300),
               "32-true/attention-eager": (95, 490), "32-true/qat-int8": (60, 600)}
    for i, (name, c) in enumerate(made.items()):
        store.add_candidate(i, name, [], "fabric", c.settings(), None)
        speed, peak = figures[name]
        store.put_trial(name, "speed", "speed", "ok", latency={"p50": 1.0}, throughput=speed,
                        items=1, peak_mb=peak)
    assert run.worth_training(store, "32-true", TORCH) == [
        "32-true/adamw-fused", "32-true/adamw-foreach", "32-true/channels-last",
        "32-true/checkpointing", "32-true/qat-int8"]
    store.close()


def _settings(**fields):
    """Training settings for the tests that call the study's steps directly."""
    from hasten.train.settings import TrainSettings

    base = dict(device="cpu", max_drop=0.01, quick=False, threads=2, point_s=1.0,
                baseline="32-true", model={}, recipe="r.py", steps=60, batch_size=16,
                eval=False, devices=1, memory_budget_mb=1.0)
    return TrainSettings(**{**base, **fields})


def test_a_candidate_built_on_a_mode_too_slow_to_win_is_skipped(tmp_path):
    from types import SimpleNamespace

    from hasten.store import Store
    from hasten.train.candidates import TrainCandidate

    store = Store(tmp_path)
    for i, c in enumerate((TrainCandidate("32-true"), TrainCandidate("bf16-mixed"),
                           TrainCandidate("bf16-mixed", ("compile",)),
                           TrainCandidate("32-true", ("compile",)))):
        store.add_candidate(i, c.name, [], "fabric", c.settings(), None)
    engine = SimpleNamespace(store=store, settings=_settings(), register=store.add_candidate)
    for name, speed in (("32-true", 34.0), ("bf16-mixed", 1.9)):
        store.put_trial(name, "speed", "speed", "ok", latency={"p50": 16 / speed * 1000},
                        throughput=speed, items=16, peak_mb=1.0)
    assert not run._skip_if_built_on_slow(engine, "bf16-mixed")
    assert not run._skip_if_built_on_slow(engine, "32-true/compile")
    assert run._skip_if_built_on_slow(engine, "bf16-mixed/compile")
    row = next(c for c in store.candidates() if c["name"] == "bf16-mixed/compile")
    assert row["skipped_reason"] == ("it runs in bf16-mixed, which ran at 0.06x fp32's samples "
                                     "per second here, so it cannot win on time")
    assert row["settings"]["switches"] == ["compile"] and row["position"] == 2
    store.close()

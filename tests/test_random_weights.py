"""A Hugging Face folder without saved weights: refused in one sentence unless random weights
are asked for (`random_weights`, --random-weights), and then measured and said in the terminal,
the report and the export."""

from __future__ import annotations

import json
import shutil

import pytest
from rich.console import Console
from test_cli import _one_error_line, hasten

from hasten import api
from hasten.errors import HastenError
from hasten.infer import menu
from hasten.report.terminal import render

BASE = "torch/eager/fp32"
# A study as short as a real one gets: one batch size, one sequence length.
SETTINGS = dict(quick=True, batch_sizes=[1], seq_lengths=[16])


@pytest.fixture(scope="module")
def config_only(tiny_bert_config_dir, tmp_path_factory):
    """This module's own copy of the tiny BERT's config and tokenizer, without weights."""
    folder = tmp_path_factory.mktemp("config-only") / "tiny-bert"
    shutil.copytree(tiny_bert_config_dir, folder)
    return folder


@pytest.fixture(scope="module")
def random_study(config_only, texts_file, tmp_path_factory):
    """The baseline alone, measured with seeded random weights as asked."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(menu, "CANDIDATES",
                      tuple(c for c in menu.CANDIDATES if c.name == BASE))
        return api.optimize_inference(f"hf:{config_only}", data=texts_file, random_weights=True,
                                      out=tmp_path_factory.mktemp("runs"), name="random",
                                      **SETTINGS)


def test_the_api_refuses_a_folder_without_weights(tiny_bert_config_dir, tmp_path):
    with pytest.raises(HastenError, match=r"^\S+ holds no weights \(model.safetensors or "
                       r"pytorch_model.bin, sharded or not\); save them .* or pass "
                       "`random_weights` to measure the architecture with seeded random "
                       r"weights.$"):
        api.optimize_inference(f"hf:{tiny_bert_config_dir}", out=tmp_path, **SETTINGS)
    assert not any(tmp_path.iterdir())


def test_the_command_line_refuses_it_naming_the_flag(tiny_bert_config_dir, tmp_path):
    line = _one_error_line(hasten("infer", "--model", f"hf:{tiny_bert_config_dir}", "--quick",
                                  "--out", str(tmp_path / "runs")))
    assert f"{tiny_bert_config_dir} holds no weights" in line
    assert "or pass --random-weights to measure the architecture" in line
    assert not (tmp_path / "runs").exists()


def test_asked_for_they_are_measured_and_recorded(random_study):
    assert random_study.finished
    assert random_study.config["model"]["random_weights"] is True
    assert random_study.results[BASE]["status"] == "ok"


def test_the_report_shows_a_banner(random_study):
    document = (random_study.folder / "report.html").read_text()
    banner = document.split('<p class="banner warn" id="random-weights">')[1].split("</p>")[0]
    assert banner.startswith("Random weights: the model was built from its config with "
                             "seeded random weights")
    assert "speeds only; fidelity figures compare random models" in banner


def test_the_export_says_so(random_study, tmp_path):
    out = random_study.export(tmp_path / "fast", candidate=BASE)
    assert json.loads((out / "candidate.json").read_text())["random_weights"] is True


def test_the_terminal_says_so(random_study):
    console = Console(record=True, width=400)
    render(random_study, console)
    lines = console.export_text().splitlines()
    assert lines[1].startswith("Random weights: the model was built from its config")


def test_the_flag_reaches_the_study(config_only, tmp_path):
    # With --random-weights the folder loads, and the next check (the batch sizes) speaks.
    line = _one_error_line(hasten("infer", "--model", f"hf:{config_only}", "--random-weights",
                                  "--batch-sizes", "0", "--out", str(tmp_path)))
    assert "Batch sizes must be between 1 and 4096, not [0]" in line


def test_weights_saved_later_are_another_study(random_study, config_only, texts_file):
    import transformers
    from safetensors.torch import save_model

    weights = config_only / "model.safetensors"
    config = transformers.AutoConfig.from_pretrained(config_only)
    save_model(transformers.AutoModel.from_config(config), str(weights), {"format": "pt"})
    try:
        with pytest.raises(HastenError, match="holds a study with other settings"):
            api.optimize_inference(f"hf:{config_only}", data=texts_file, random_weights=True,
                                   out=random_study.folder.parent, name="random", **SETTINGS)
    finally:
        weights.unlink()

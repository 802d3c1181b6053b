"""Exporting a generation study's candidate: the files, and a load.py that runs outside
hasten and produces the tokens the study measured."""

from __future__ import annotations

import json
import math

import pytest

from hasten import api
from hasten.errors import HastenError
from hasten.generate import backends

MENU = ("torch/eager/fp32", "openvino/stateful/f32")


@pytest.fixture(scope="module")
def study(llama_dir, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        every = backends.load_all()
        patch.setattr(backends, "load_all", lambda: {n: every[n] for n in MENU})
        return api.optimize_inference(
            f"hf:{llama_dir}", prompt_lengths=[16], new_tokens=6, batch_sizes=[1],
            out=tmp_path_factory.mktemp("runs"), point_s=0.2, budget_s=math.inf,
            report=False)


@pytest.mark.parametrize("name", MENU)
def test_load_py_produces_the_tokens_the_study_measured(study, tmp_path, name,
                                                        outside_hasten):
    out = study.export(tmp_path / "fast", candidate=name)
    recipe = json.loads((out / "candidate.json").read_text())
    assert recipe["candidate"] == name
    assert len(recipe["continuations"]["tokens"][0]) == 6
    run = outside_hasten(out, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "same tokens as the study: yes" in run.stdout
    # The baseline's own continuations are the reference the study kept.
    if name == "torch/eager/fp32":
        reference = study.folder / "generate_reference.npz"
        import numpy as np

        kept = np.load(reference)["continuations"].tolist()
        assert recipe["continuations"]["tokens"] == kept


def test_exporting_again_replaces_only_what_hasten_wrote(study, tmp_path):
    out = tmp_path / "fast"
    study.export(out, candidate="openvino/stateful/f32")
    (out / "mine.txt").write_text("the user's")
    study.export(out, candidate="torch/eager/fp32")
    assert (out / "mine.txt").read_text() == "the user's"
    assert not (out / "model.xml").exists()


def test_an_unfinished_candidate_is_one_sentence(study, tmp_path):
    with pytest.raises(HastenError, match="is not a finished candidate"):
        study.export(tmp_path / "x", candidate="torchao/compile/int8-weight-only")

"""The digits example: train.py trains a CNN on scikit-learn's real handwritten digits in
seconds and writes a labelled held-out image folder; model.py loads it as a `py:` factory, and
hasten's image pipeline reproduces the held-out accuracy that training printed; recipe.py
trains the same CNN through `hasten train`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from example_study import assert_measured, quick_study

from hasten import images
from hasten.errors import HastenError
from hasten.models import load_model

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("digits")
    proc = subprocess.run([sys.executable, str(EXAMPLE / "train.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, check=True)
    accuracy = float(re.search(r"held-out accuracy ([\d.]+)", proc.stdout).group(1))
    return out, accuracy


def test_training_is_accurate(trained):
    out, accuracy = trained
    assert accuracy > 0.9
    assert (out / "weights.pt").is_file()


def test_held_out_images_form_a_labelled_folder(trained):
    out, _ = trained
    paths, labels = images.read_folder(out / "heldout")
    assert len(paths) == 540  # 30% of 1,797
    assert sorted(set(labels)) == list(range(10))
    # Stratified: every digit has its share of the held-out images.
    assert min(labels.count(d) for d in range(10)) >= 50
    assert all(Path(p).parent.name == str(label) for p, label in zip(paths, labels, strict=True))


def test_the_factory_reproduces_the_accuracy_through_hasten(trained, monkeypatch):
    out, accuracy = trained
    monkeypatch.setenv("DIGITS_WEIGHTS", str(out / "weights.pt"))
    model = load_model(f"py:{EXAMPLE / 'model.py'}:build")
    channels, size = images.image_input(model.example_inputs)
    assert (channels, size) == (1, (8, 8))
    paths, labels = images.read_folder(out / "heldout")
    pixels = images.load(paths, images.preparation(channels, size))
    with torch.inference_mode():
        predicted = model.module(pixels).argmax(1)
    assert (predicted == torch.tensor(labels)).float().mean().item() == pytest.approx(accuracy,
                                                                                      abs=1e-4)


def test_the_factory_without_weights_says_to_train(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITS_WEIGHTS", str(tmp_path / "missing.pt"))
    with pytest.raises(HastenError, match="run examples/digits/train.py first"):
        load_model(f"py:{EXAMPLE / 'model.py'}:build")


def test_the_recipe_runs_a_quick_study(tmp_path):
    """recipe.py trains the same CNN on the same split through `hasten train`."""
    study = quick_study(EXAMPLE / "recipe.py", tmp_path, steps=4, batch_size=16, budget_s=40)
    assert study["config"]["model"]["train_size"] == 1257  # 70% of the 1,797 digits
    assert_measured(study, steps=4, metric="accuracy")

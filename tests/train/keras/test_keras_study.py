"""The Keras study end to end on a tiny model, on both backends: every dtype policy trained to
the end, the loss scale of mixed_float16, the float32 output found and measured, the report,
resume and --json."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from filelock import FileLock

from hasten.train.study import TrainStudy

pytest.importorskip("keras")

BACKENDS = ["tensorflow", "torch"]
POLICIES = ["float32", "mixed_float16", "mixed_bfloat16", "float16", "bfloat16"]


# A tiny Keras classifier for the Keras study's tests (tests/train/keras): 24 samples of 4
# features, 3 classes; FLOAT32_LAST gives its last layer dtype="float32".
KERAS_RECIPE = textwrap.dedent(
    """
    import keras
    import numpy as np

    FLOAT32_LAST = {float32_last}


    def model():
        last = dict(dtype="float32") if FLOAT32_LAST else {{}}
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                                 keras.layers.Dense(3, **last)])


    def train_data():
        x = np.random.default_rng(0).normal(size=(24, 4)).astype("float32")
        return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0)


    eval_data = train_data


    def loss():
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


    def metrics():
        return ["accuracy"]
    """
)
# The study's settings: one batch of 16 (twice that is more than the 24 samples, so the
# batch-size search probes nothing), a few steps, quick mode (every policy and the float32
# output under mixed_float16).
KERAS_STUDY = dict(steps=6, batch_size=16, quick=True)


def write_keras_recipe(folder: Path, float32_last: bool) -> Path:
    path = folder / ("keras_f32_last.py" if float32_last else "keras_tiny.py")
    path.write_text(KERAS_RECIPE.format(float32_last=float32_last))
    return path


@pytest.fixture(scope="session")
def keras_study(tmp_path_factory):
    """A function backend -> the folder of a finished quick Keras study on that backend, run
    once per test session (under a file lock, shared by pytest-xdist's workers). On tensorflow
    the recipe's last layer follows the policy; on torch it is float32 already, so both sides
    of the float32-output candidate are seen."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent

    def study(backend: str) -> Path:
        pytest.importorskip("keras")
        if backend == "tensorflow":
            pytest.importorskip("tensorflow")
        import hasten

        with FileLock(shared / f"keras-{backend}.lock"):
            folder = shared / f"keras-{backend}"
            if not (folder / "study" / "study.sqlite").is_file():
                folder.mkdir(exist_ok=True)
                recipe = write_keras_recipe(folder, float32_last=backend == "torch")
                hasten.optimize_training(recipe, out=folder, name="study",
                                         keras_backend=backend, **KERAS_STUDY)
            return folder / "study"

    return study


def _rows(folder) -> dict[str, dict]:
    return {r["candidate"]: r for r in TrainStudy(folder).table()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_policy_trains_to_the_end(keras_study, backend):
    folder = keras_study(backend)
    study = TrainStudy(folder)
    assert study.finished and study.keras_backend == backend
    assert study.baseline == "float32"
    rows = _rows(folder)
    for policy in POLICIES:
        row = rows[policy]
        assert row["speed"] and row["samples_per_s"] > 0 and row["peak_mb"] >= 0, policy
        outcome = row["converge"]
        assert outcome, policy
        # Trained for the study's steps, or stopped by a non-finite loss, with the reason.
        assert outcome["steps"] == KERAS_STUDY["steps"] or outcome["diverged"], policy
        assert len(outcome["losses"]) == outcome["steps"], policy
    assert rows["float32"]["status"] == "ok"
    assert rows["float32"]["converge"]["eval"].keys() == {"accuracy", "loss"}
    # The same weights and batches: the first loss of every mixed policy is float32's, nearly.
    first = rows["float32"]["converge"]["first_loss"]
    for policy in ("mixed_float16", "mixed_bfloat16"):
        assert rows[policy]["converge"]["first_loss"] == pytest.approx(first, rel=0.05)
    assert any(f"{backend} backend" in n for n in rows["mixed_float16"]["notes"])


def test_mixed_float16_records_its_loss_scale(keras_study):
    rows = _rows(keras_study("tensorflow"))
    outcome = rows["mixed_float16"]["converge"]
    assert len(outcome["scales"]) == KERAS_STUDY["steps"]
    assert all(s > 0 for s in outcome["scales"])
    assert isinstance(outcome["skipped_steps"], int)
    assert rows["float32"]["converge"]["scales"] == []
    assert "LossScaleOptimizer" in " ".join(rows["mixed_float16"]["notes"])
    assert any("LossScaleOptimizer" in line for line in rows["mixed_float16"]["code"])
    assert rows["bfloat16"]["converge"]["scales"] == []


def test_the_float32_output_is_found_and_measured(keras_study):
    study = TrainStudy(keras_study("tensorflow"))
    assert study.settings.model["output_dtype"] == {"mixed_float16": "float16",
                                                    "mixed_bfloat16": "bfloat16"}
    row = _rows(study.folder)["mixed_float16/float32-output"]
    assert row["converge"]["steps"] == KERAS_STUDY["steps"]
    assert row["converge"]["eval"]["accuracy"] >= 0
    assert any('Activation("linear", dtype="float32")' in line for line in row["code"])
    # A last layer already in float32: said, and the candidate skipped with that reason.
    torch_study = TrainStudy(keras_study("torch"))
    assert torch_study.settings.model["output_dtype"]["mixed_float16"] == "float32"
    skipped = _rows(torch_study.folder)["mixed_float16/float32-output"]
    assert skipped["status"] == "skipped" and "already computes in float32" in skipped["reason"]
    xla = _rows(torch_study.folder)["float32/xla"]
    assert xla["status"] == "skipped"


def test_the_report_shows_the_backend(keras_study):
    from hasten.api import write_report

    study = TrainStudy(keras_study("torch"))
    html = write_report(study).read_text()
    assert "Keras backend" in html and "torch" in html and "mixed_bfloat16" in html


def test_train_resumes_and_prints_json(keras_study):
    from typer.testing import CliRunner

    from hasten.cli import app

    folder = keras_study("tensorflow")
    before = len(TrainStudy(folder).trials)
    recipe = TrainStudy(folder).settings.recipe
    args = ["train", recipe, "--out", str(folder.parent), "--name", folder.name, "--quick",
            "--steps", str(KERAS_STUDY["steps"]), "--batch-size",
            str(KERAS_STUDY["batch_size"]), "--keras-backend", "tensorflow", "--json",
            "--no-report"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{"):])
    assert data["keras_backend"] == "tensorflow" and data["baseline"] == "float32"
    assert {c["candidate"] for c in data["candidates"]} >= set(POLICIES)
    assert data["recommendations"]["time"] is not None
    assert len(TrainStudy(folder).trials) == before  # resumed: nothing ran again

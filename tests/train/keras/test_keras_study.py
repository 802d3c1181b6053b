"""The Keras study end to end on a tiny model, on both backends: every dtype policy trained to
the end, the loss scale of mixed_float16, the float32 output found and measured, resume and
--json. The torch backend's own checks are in test_keras_torch_backend.py, so that pytest-xdist
runs the two studies at once."""

from __future__ import annotations

import json

import pytest

from hasten.train.study import TrainStudy

pytest.importorskip("keras")

BACKENDS = ["tensorflow", "torch"]
POLICIES = ["float32", "mixed_float16", "mixed_bfloat16", "float16", "bfloat16"]
STEPS, BATCH = 6, 16  # the keras_study fixture's (tests/conftest.py)


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
        assert outcome["steps"] == STEPS or outcome["diverged"], policy
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
    assert len(outcome["scales"]) == STEPS
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
    assert row["converge"]["steps"] == STEPS
    assert row["converge"]["eval"]["accuracy"] >= 0
    assert any('Activation("linear", dtype="float32")' in line for line in row["code"])


def test_train_resumes_and_prints_json(keras_study):
    from typer.testing import CliRunner

    from hasten.cli import app

    folder = keras_study("tensorflow")
    before = len(TrainStudy(folder).trials)
    recipe = TrainStudy(folder).settings.recipe
    args = ["train", recipe, "--out", str(folder.parent), "--name", folder.name, "--quick",
            "--steps", str(STEPS), "--batch-size",
            str(BATCH), "--keras-backend", "tensorflow", "--json",
            "--no-report"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{"):])
    assert data["keras_backend"] == "tensorflow" and data["baseline"] == "float32"
    assert {c["candidate"] for c in data["candidates"]} >= set(POLICIES)
    assert data["recommendations"]["time"] is not None
    assert len(TrainStudy(folder).trials) == before  # resumed: nothing ran again

"""The Lightning example: an unchanged LightningModule and LightningDataModule (plain torch
classes where Lightning is not installed) run as a quick `hasten train` study through
hasten.train.lightning."""

from __future__ import annotations

from example_study import EXAMPLES, assert_measured, quick_study

RECIPE = EXAMPLES / "lightning" / "recipe.py"


def test_the_recipe_runs_a_quick_study(tmp_path):
    study = quick_study(RECIPE, tmp_path, steps=4, batch_size=16, budget_s=45)
    assert study["config"]["model"]["train_size"] == 1257
    rows = assert_measured(study, steps=4, metric="val_accuracy")
    # What validation_step logs is the evaluation, in the order it logs it.
    assert list(rows[study["baseline"]]["converge"]["eval"]) == ["val_accuracy", "val_loss"]

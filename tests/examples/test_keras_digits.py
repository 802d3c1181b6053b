"""The Keras recipe: a functional-API CNN on the digits, its softmax kept in float32, run as a
quick `hasten train` study."""

from __future__ import annotations

import pytest
from example_study import EXAMPLES, assert_measured, quick_study

RECIPE = EXAMPLES / "keras_digits" / "recipe.py"


def test_the_recipe_runs_a_quick_study(tmp_path):
    pytest.importorskip("keras")
    study = quick_study(RECIPE, tmp_path, steps=3, batch_size=16, budget_s=60)
    facts = study["config"]["model"]
    assert facts["train_size"] == 1257
    # The float32 softmax: every mixed policy's output stays float32.
    assert set(facts["output_dtype"].values()) == {"float32"}
    rows = assert_measured(study, steps=3, metric="accuracy")
    assert rows["float32"]["baseline"]

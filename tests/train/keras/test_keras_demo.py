"""The bundled Keras demo (keras-digits): the PyTorch digits demo's data and split, a model
whose outputs follow the mixed policies (so its float32-output candidate is measured)."""

from __future__ import annotations

import pytest

from hasten.train.run import DEFAULT_DEMOS, DEMOS

pytest.importorskip("keras")


def test_the_keras_demo_is_named_and_checks():
    from hasten.train.keras.recipe import check, load_keras_recipe
    from hasten.train.recipe import is_keras_recipe

    path, settings = DEMOS["keras-digits"]
    assert "keras-digits" not in DEFAULT_DEMOS and settings["batch_size"] == 64
    assert is_keras_recipe(path)
    recipe = load_keras_recipe(path)
    x, y = recipe.eval_arrays()
    assert x.shape == (540, 8, 8, 1) and set(y) == set(range(10))
    facts, _ = check(recipe, settings["batch_size"], True)
    assert facts["train_size"] == 1257
    assert facts["output_dtype"] == {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}

"""Loading recipes: what a recipe must define, and clear errors for what it gets wrong."""

from __future__ import annotations

import textwrap

import pytest
import torch

from hasten.errors import HastenError
from hasten.train.recipe import load_recipe

GOOD = textwrap.dedent(
    """
    import torch


    def model():
        return torch.nn.Linear(3, 1)


    def train_data():
        return torch.utils.data.TensorDataset(torch.arange(30.0).reshape(10, 3))


    def loss(model, batch):
        return model(batch[0]).pow(2).mean()
    """
)


def _recipe(tmp_path, source):
    path = tmp_path / "recipe.py"
    path.write_text(source)
    return load_recipe(path)


def test_a_recipe_gives_model_batches_and_loss(tmp_path):
    recipe = _recipe(tmp_path, GOOD)
    module = recipe.build_model()
    assert isinstance(recipe.build_optimizer(module), torch.optim.AdamW)
    first = [b[0] for b in recipe.batches(4, 2)]
    again = [b[0] for b in recipe.batches(4, 2)]
    assert [t.shape[0] for t in first] == [4, 4]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert recipe.compute_loss(module, (first[0],)).dim() == 0


@pytest.mark.parametrize("source, message", [
    (GOOD.replace("def loss", "def not_loss"), r"has no loss\(\); a recipe defines"),
    (GOOD.replace("torch.nn.Linear(3, 1)", "42"),
     r"must return a torch.nn.Module or a keras.Model, not int"),
    (GOOD.replace("torch.arange(30.0).reshape(10, 3)", "torch.zeros(0, 3)"), "empty dataset"),
    (GOOD.replace("return model(batch[0]).pow(2).mean()", "return 1.5"),
     "must return a scalar tensor, not float"),
    (GOOD.replace("return model(batch[0])", "return model(batch[0][:, :2])"),
     r"loss\(\) failed \(RuntimeError"),
    ("import not_a_module_anywhere\n", r"Importing recipe.py failed \(ModuleNotFoundError"),
])
def test_bad_recipes_get_one_sentence(tmp_path, source, message):
    with pytest.raises(HastenError, match=message):
        recipe = _recipe(tmp_path, source)
        module = recipe.build_model()
        for batch in recipe.batches(4, 1):
            recipe.compute_loss(module, batch)


def test_missing_or_wrong_file(tmp_path):
    with pytest.raises(HastenError, match="No recipe file"):
        load_recipe(tmp_path / "nope.py")
    (tmp_path / "r.txt").write_text("x")
    with pytest.raises(HastenError, match="not a .py file"):
        load_recipe(tmp_path / "r.txt")

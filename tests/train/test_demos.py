"""The bundled demo recipes: they load, train (the loss falls), evaluate, and their data is
balanced, fixed and split without overlap."""

from __future__ import annotations

import math

import pytest
import torch

from hasten.train.demos import DEMOS
from hasten.train.recipe import load_recipe


@pytest.fixture(scope="module")
def digits():
    return load_recipe(DEMOS["digits"])


@pytest.fixture(scope="module")
def text():
    return load_recipe(DEMOS["text"])


def test_demos_name_their_recipe_files():
    assert set(DEMOS) == {"digits", "text"}
    assert all(path.is_file() and path.suffix == ".py" for path in DEMOS.values())


def _train(recipe, module, batch, steps):
    optimizer = recipe.build_optimizer(module)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        value = recipe.compute_loss(module, batch)
        assert value.dim() == 0 and math.isfinite(value.item())
        value.backward()
        optimizer.step()
        losses.append(value.item())
    return losses


def _accuracy(recipe, module, batch):
    module.eval()
    result = recipe.evaluate(module, batch)
    module.train()
    assert set(result) == {"accuracy"}
    assert 0.0 <= result["accuracy"] <= 1.0
    return result["accuracy"]


def _rows(dataset):
    """Each sample's features as a hashable row (labels left out)."""
    features = torch.cat([t.flatten(1).float() for t in dataset.tensors[:-1]], dim=1)
    return {tuple(row) for row in features.tolist()}


def test_digits_trains_and_evaluates(digits):
    module = digits.build_model()
    x, y = next(digits.batches(64, 1))
    assert x.shape == (64, 1, 8, 8) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and y.dtype == torch.int64
    losses = _train(digits, module, (x, y), steps=20)
    assert losses[-1] < 0.5 * losses[0]
    _accuracy(digits, module, next(iter(torch.utils.data.DataLoader(digits.eval_data(), 128))))


def test_digits_split_is_fixed_stratified_and_disjoint(digits):
    train, held = digits.train_data(), digits.eval_data()
    assert (len(train), len(held)) == (1257, 540)
    torch.manual_seed(123)  # the split must not depend on the global seed
    again = load_recipe(DEMOS["digits"])
    assert all(torch.equal(a, b) for a, b in zip(train.tensors, again.train_data().tensors,
                                                 strict=True))
    held_counts = torch.bincount(held.tensors[1])
    totals = held_counts + torch.bincount(train.tensors[1])
    assert ((held_counts - 0.3 * totals).abs() <= 1).all()  # stratified
    # Some scans are identical in the raw data set; no more than those may be shared.
    assert len(_rows(train) & _rows(held)) <= 5


def test_digits_model_is_the_same_on_every_call(digits):
    a, b = digits.build_model(), digits.build_model()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_text_trains_and_evaluates(text):
    import transformers

    module = text.build_model()
    assert any(isinstance(m, transformers.PreTrainedModel) for m in module.modules())
    first, second = text.batches(16, 2)
    input_ids, mask, labels = first
    assert input_ids.shape == mask.shape == (16, 32) and labels.shape == (16,)
    assert not torch.equal(first[0], second[0])
    torch.manual_seed(0)  # dropout
    losses = _train(text, module, first, steps=4)
    assert losses[-1] < losses[0]
    _accuracy(text, module, second)


def test_text_classes_are_balanced_fixed_and_disjoint(text):
    train, held = text.train_data(), text.eval_data()
    train_counts = torch.bincount(train.tensors[2]).tolist()
    held_counts = torch.bincount(held.tensors[2]).tolist()
    assert len(train_counts) == 4 and len(set(train_counts)) == 1 and len(set(held_counts)) == 1
    assert held_counts[0] / (held_counts[0] + train_counts[0]) == pytest.approx(0.25, abs=0.01)
    assert text.train_data() is train  # cached: repeated calls are cheap
    again = load_recipe(DEMOS["text"])
    assert [b[0].tolist() for b in text.batches(16, 2)] == [
        b[0].tolist() for b in again.batches(16, 2)]
    # Sentences are de-duplicated before the split, so no held-out sentence is trained on.
    assert not _rows(train) & _rows(held)

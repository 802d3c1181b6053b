"""The Hugging Face text recipe: the bundled MiniLM with its own tokenizer, a collate function
that pads each batch to its longest sentence, real labelled sentences split without overlap,
and a quick `hasten train` study of it (on a tiny BERT folder, which the recipe takes through
HF_TEXT_MODEL, so that the study stays quick)."""

from __future__ import annotations

import math

import pytest
import torch
from example_study import EXAMPLES, assert_measured, quick_study

from hasten.train.recipe import load_recipe

RECIPE = EXAMPLES / "hf_text" / "recipe.py"


@pytest.fixture(scope="module")
def recipe():
    return load_recipe(RECIPE)


def test_the_sentences_are_balanced_and_split_without_overlap(recipe):
    train, held = recipe.train_dataset(), recipe.eval_dataset()
    assert (len(train), len(held)) == (1800, 600)  # 600 per topic, a quarter held out
    labels = [s["labels"] for s in held.samples]
    assert [labels.count(topic) for topic in range(4)] == [150] * 4
    seen = {tuple(s["input_ids"]) for s in train.samples}
    assert not any(tuple(s["input_ids"]) in seen for s in held.samples)


def test_each_batch_is_padded_to_its_longest_sentence(recipe):
    batch = next(recipe.batches(8, 1))
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape and ids.shape[0] == 8 and batch["labels"].shape == (8,)
    # Dynamic padding: the longest sentence fills the batch, the others are padded.
    lengths = mask.sum(1)
    assert lengths.max() == ids.shape[1]
    assert (lengths < ids.shape[1]).any()
    pad = recipe.train_dataset().collate.tokenizer.pad_token_id
    assert (ids[mask == 0] == pad).all()


def test_the_pretrained_classifier_trains_on_the_real_tokens(recipe):
    torch.manual_seed(0)
    module = recipe.build_model()
    assert type(module).__name__ == "BertForSequenceClassification"
    assert module.config.id2label[0] == "files & OS"
    batch = next(recipe.batches(8, 1))
    loss = recipe.compute_loss(module, batch)
    # A new 4-way head starts near chance: cross-entropy about ln 4.
    assert abs(loss.item() - math.log(4)) < 0.5
    loss.backward()
    module.eval()
    with torch.no_grad():
        assert 0 <= recipe.evaluate_batch(module, batch)["accuracy"] <= 1


def test_the_recipe_runs_a_quick_study(tmp_path, tiny_bert_dir):
    study = quick_study(RECIPE, tmp_path, steps=4, batch_size=16, budget_s=50,
                        env={"HF_TEXT_MODEL": str(tiny_bert_dir)})
    assert study["config"]["model"]["model"] == "BertForSequenceClassification"
    assert study["config"]["model"]["train_size"] == 1800
    assert_measured(study, steps=4, metric="accuracy")

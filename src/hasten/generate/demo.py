"""The demo decoder of `hasten infer --demo decoder`: a small Llama-style language model trained
on real text (the standard library's documentation), so that the generation study's
perplexity and next-token agreement mean something. No package ships one, so hasten trains it
once, in a couple of minutes on a CPU, and keeps it in the user's cache."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib
import inspect
import json
import math
import os
import random
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from hasten.data import CORPUS_MODULES, _sentences, docstrings, require_sentences
from hasten.errors import HastenError
from hasten.folders import MARKER, marker, write_whole
from hasten.machine import usable_cores

# Bumped whenever the recipe (the texts, the tokenizer, the model or its training) changes, so
# that a cached decoder is never one another recipe made.
VERSION = 2
KIND = "demo-decoder"  # the kind in a built decoder's marker
EOS = "<|endoftext|>"
HELD_OUT = 0.15  # the last share of the demo texts, never trained on
PROGRESS_S = 20  # seconds between progress lines
MINIMUM_TEXTS = 8000  # fewer sentences mean a Python without docstrings (-OO); 13,237 on 3.11
# Sustained fp32 training throughput of one core, in FLOP/s, for the time a build announces:
# measured on a 2-core Xeon (Sapphire Rapids) and rounded down.
FLOPS_PER_CORE = 5e10

# More standard-library modules whose documentation the demo decoder reads beside hasten.data's
# CORPUS_MODULES, and the language reference's topics from pydoc_data: the demo corpus alone is
# too few tokens to train on and to hold out enough of.
EXTRA_MODULES = (
    "builtins os.path collections.abc email.message email.utils email.header email.parser "
    "email.generator email.policy email.headerregistry email.charset logging.handlers "
    "logging.config unittest.mock importlib.metadata importlib.resources importlib.util "
    "importlib.abc importlib.machinery asyncio.events asyncio.futures asyncio.tasks "
    "http.cookiejar http.cookies xml.sax xml.sax.handler xml.sax.saxutils xml.sax.xmlreader "
    "xml.dom doctest pdb bdb pydoc cProfile pstats dis code codeop compileall py_compile "
    "runpy sysconfig getopt getpass quopri binascii tracemalloc zoneinfo graphlib contextvars "
    "stat filecmp linecache reprlib pickletools copyreg dbm webbrowser wsgiref.handlers "
    "wsgiref.util xmlrpc.client xmlrpc.server urllib.error urllib.robotparser modulefinder "
    "symtable tabnanny pyclbr concurrent.futures.process multiprocessing.pool "
    "multiprocessing.managers multiprocessing.connection multiprocessing.shared_memory cmath "
    "math _pydecimal _pyio _strptime ntpath ssl"
).split()


@dataclass(frozen=True)
class Recipe:
    """How the decoder is made: tokenizer and model sizes, and a training run of a fixed number
    of steps (never a wall-clock budget, so that every machine trains the same model)."""

    vocab: int = 4096
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 344
    positions: int = 1024  # a prompt of 512 tokens and 64 new ones fit
    window: int = 640  # tokens a training sequence holds
    batch: int = 2
    steps: int = 1300
    lr: float = 4e-3
    warmup: int = 50
    weight_decay: float = 0.1
    seed: int = 0


DEMO = Recipe()


def demo_texts() -> tuple[list[str], list[str]]:
    """The demo texts (sentences of the standard library's documentation) split into those the
    demo decoder trains on and the last HELD_OUT of them, held out for prompts and fidelity."""
    texts = _texts()
    cut = len(texts) - round(len(texts) * HELD_OUT)
    return list(texts[:cut]), list(texts[cut:])


@functools.cache
def _texts() -> tuple[str, ...]:
    """The sentences of the documentation of CORPUS_MODULES, EXTRA_MODULES and pydoc_data's
    topics, de-duplicated, sorted, then shuffled by a fixed seed: the same on every machine
    with this Python, whatever else the process imported first."""
    import pydoc_data.topics

    docs: list[str | None] = list(pydoc_data.topics.topics.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in (*CORPUS_MODULES, *EXTRA_MODULES):
            with contextlib.suppress(ImportError):
                docs += docstrings(importlib.import_module(name),
                                   lambda m: inspect.isclass(m) or inspect.isroutine(m))
    texts = sorted({sentence for doc in docs for sentence in _sentences(doc)})
    require_sentences(texts, MINIMUM_TEXTS)
    random.Random(0).shuffle(texts)
    return tuple(texts)


def cache_dir() -> Path:
    """Where hasten keeps what it builds once for this account: HASTEN_CACHE, or the XDG cache
    folder."""
    if os.environ.get("HASTEN_CACHE"):
        return Path(os.environ["HASTEN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hasten"


def demo_decoder_dir(log: Callable[[str], None] = print) -> Path:
    """The folder of the demo decoder (a Hugging Face LlamaForCausalLM with its tokenizer),
    trained on first use and reused after. Its name carries the recipe's version and a digest
    of the training texts, so that a Python whose docstrings differ gets a decoder of its own,
    one that never saw its held-out texts."""
    train, _ = demo_texts()
    digest = hashlib.sha256("\0".join(train).encode()).hexdigest()[:10]
    return _build(cache_dir() / f"{KIND}-v{VERSION}-{digest}", DEMO, train, log)


def _build(folder: Path, recipe: Recipe, texts: list[str], log: Callable[[str], None]) -> Path:
    """`folder` once it holds a decoder trained by `recipe` on `texts`: reused when finished,
    else trained in a temporary folder beside it and renamed into place, under a lock, so that
    a killed build leaves nothing that is later taken for the decoder and two builds at once
    train it only once."""
    if _finished(folder):
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HastenError(f"hasten cannot create its cache folder {folder.parent} "
                          f"({exc.strerror}); set HASTEN_CACHE to a writable folder.") from exc
    with _locked(folder.parent / f".{folder.name}.lock", log):
        if _finished(folder):
            return folder
        if folder.exists():
            raise HastenError(f"{folder} is not a finished demo decoder; delete it, and hasten "
                              "will train it again.")
        for leftover in folder.parent.glob(f".{folder.name}.*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)  # a killed build's: the lock is ours
        work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
        try:
            loss = _train(work, recipe, texts, log)
            write_whole(work / MARKER, json.dumps({"kind": KIND, "recipe": asdict(recipe),
                                                   "loss": loss}))
            work.rename(folder)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    log(f"The demo decoder is in {folder}.")
    return folder


def _finished(folder: Path) -> bool:
    """Whether `folder` holds a finished build: its marker, written last, and its weights."""
    found = marker(folder)
    return (found is not None and found["kind"] == KIND
            and (folder / "model.safetensors").is_file())


@contextlib.contextmanager
def _locked(path: Path, log: Callable[[str], None]) -> Iterator[None]:
    """An exclusive flock on `path` while the block runs (released by the system if the
    process dies); says so when another process holds it and this one waits."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("Another hasten process is training the demo decoder; waiting for it.")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _train(folder: Path, recipe: Recipe, texts: list[str], log: Callable[[str], None]) -> dict:
    """Train a tokenizer and a decoder by `recipe` on `texts` and save both in `folder`;
    returns the mean training loss of the first and of the last tenth of the steps."""
    threads = torch.get_num_threads()
    torch.set_num_threads(usable_cores())
    try:
        start = time.monotonic()
        tok = _tokenizer(texts, recipe.vocab)
        eos = tok.token_to_id(EOS)
        stream = torch.tensor([i for e in tok.encode_batch(texts) for i in [*e.ids, eos]])
        model = _model(recipe, tok.get_vocab_size(), eos)
        parameters = sum(p.numel() for p in model.parameters())
        tokens = recipe.steps * recipe.batch * recipe.window
        estimate = 6 * parameters * tokens / (FLOPS_PER_CORE * usable_cores())
        log(f"Training the demo decoder ({parameters / 1e6:.1f}M parameters, {recipe.steps} "
            f"steps over {len(stream):,} tokens of Python's documentation); this happens once "
            f"and takes about {_duration(estimate)} here.")
        losses = _fit(model, stream, recipe, log)
        model.save_pretrained(folder)
        _save_tokenizer(tok, folder, recipe.positions)
        log(f"Trained in {time.monotonic() - start:.0f} s: loss {losses[0]:.2f} at first, "
            f"{losses[-1]:.2f} at the end.")
    finally:
        torch.set_num_threads(threads)
    tenth = max(1, len(losses) // 10)
    return {"first": sum(losses[:tenth]) / tenth, "last": sum(losses[-tenth:]) / tenth}


def _tokenizer(texts: list[str], vocab: int) -> Any:
    """A byte-level BPE tokenizer of `vocab` tokens trained on `texts`, EOS its one special
    token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=[EOS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def _save_tokenizer(tok: Any, folder: Path, positions: int) -> None:
    """Save the tokenizer in `folder` as transformers loads it."""
    from transformers import PreTrainedTokenizerFast

    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS,
                            model_max_length=positions).save_pretrained(folder)


def _model(recipe: Recipe, vocab: int, eos: int) -> torch.nn.Module:
    """A seeded LlamaForCausalLM of the recipe's sizes (grouped-query attention, RoPE, tied
    embeddings), greedy by default."""
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=recipe.hidden, intermediate_size=recipe.intermediate,
        num_hidden_layers=recipe.layers, num_attention_heads=recipe.heads,
        num_key_value_heads=recipe.kv_heads, max_position_embeddings=recipe.positions,
        tie_word_embeddings=True, bos_token_id=eos, eos_token_id=eos,
        architectures=["LlamaForCausalLM"])
    torch.manual_seed(recipe.seed)
    model = transformers.LlamaForCausalLM(config)
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, do_sample=False)
    return model


def _fit(model: torch.nn.Module, stream: torch.Tensor, recipe: Recipe,
         log: Callable[[str], None]) -> list[float]:
    """Train `model` for the recipe's steps on windows drawn from the token stream in a seeded
    order (AdamW, linear warm-up, cosine decay to a tenth); returns each step's loss."""
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": matrices, "weight_decay": recipe.weight_decay},
                                   {"params": others, "weight_decay": 0.0}],
                                  lr=recipe.lr, betas=(0.9, 0.95))

    def scale(step: int) -> float:
        if step < recipe.warmup:
            return (step + 1) / recipe.warmup
        done = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * done))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, scale)
    order = torch.Generator().manual_seed(recipe.seed)
    model.train()
    losses: list[float] = []
    start = shown = time.monotonic()
    for step in range(recipe.steps):
        starts = torch.randint(0, len(stream) - recipe.window + 1, (recipe.batch,),
                               generator=order)
        batch = torch.stack([stream[s:s + recipe.window] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        losses.append(loss.item())
        if time.monotonic() - shown >= PROGRESS_S:
            shown = time.monotonic()
            left = (shown - start) / (step + 1) * (recipe.steps - step - 1)
            log(f"  step {step + 1}/{recipe.steps}: loss {losses[-1]:.2f}, about "
                f"{_duration(left)} left")
    model.eval()
    return losses


def _duration(seconds: float) -> str:
    """A rough duration in words: seconds under two minutes, else minutes."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} minutes"

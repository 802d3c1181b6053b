"""Tiny decoders built from configs (seeded random weights, saved with a small byte-level BPE
tokenizer trained on the demo corpus): a Llama-style one and a GPT-2-style one; and the
Llama-style one's config without weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hasten.data import demo_corpus

CONFIGS = {
    "llama": dict(model_type="llama", hidden_size=64, intermediate_size=128,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=256),
    "gpt2": dict(model_type="gpt2", n_embd=64, n_layer=2, n_head=4, n_positions=256),
}


def save_tokenizer(folder: Path, vocab_size: int = 300) -> None:
    """A byte-level BPE tokenizer trained on a slice of the demo corpus, saved in `folder`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(demo_corpus()[:500], trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(
        folder)


def make_decoder(folder: Path, kind: str = "llama", weights: bool = True,
                 tokenizer: bool = True) -> Path:
    """A tiny decoder of `kind` saved in `folder` (seeded random weights)."""
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    options = dict(CONFIGS[kind])
    model_type = options.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, vocab_size=300, eos_token_id=0,
                                               bos_token_id=0, **options)
    config.architectures = [{"llama": "LlamaForCausalLM", "gpt2": "GPT2LMHeadModel"}[kind]]
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    if weights:
        model.save_pretrained(folder)
    else:
        config.save_pretrained(folder)
    if tokenizer:
        save_tokenizer(folder)
    return folder


def run_outside_hasten(out: Path, cwd: Path) -> subprocess.CompletedProcess:
    """Run an export's load.py where hasten is not importable (a package of that name that
    refuses shadows it), as a user without hasten would."""
    blocker = cwd / "blocker" / "hasten"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('load.py imported hasten')\n")
    return subprocess.run([sys.executable, str(out / "load.py")], capture_output=True,
                          text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(blocker.parent)})


@pytest.fixture
def outside_hasten():
    """run_outside_hasten, for the export tests."""
    return run_outside_hasten


@pytest.fixture
def decoder_factory():
    """make_decoder, for tests that need a decoder of their own."""
    return make_decoder


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    return make_decoder(tmp_path_factory.mktemp("llama"), "llama")


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> Path:
    return make_decoder(tmp_path_factory.mktemp("gpt2"), "gpt2")


@pytest.fixture(scope="module")
def llama_config_dir(tmp_path_factory) -> Path:
    """The tiny Llama-style decoder's config and tokenizer, without weights."""
    return make_decoder(tmp_path_factory.mktemp("llama-config"), "llama", weights=False)

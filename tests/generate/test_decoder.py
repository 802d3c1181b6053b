"""Recognising and checking a decoder folder."""

from __future__ import annotations

import pytest

from hasten.errors import HastenError
from hasten.generate.decoder import is_decoder, load_decoder


def test_causal_lm_folders_are_decoders(llama_dir, gpt2_dir, tmp_path):
    assert is_decoder(f"hf:{llama_dir}")
    assert is_decoder(f"hf:{gpt2_dir}")  # GPT2LMHeadModel: transformers maps it as a causal LM
    assert is_decoder("py:net.py:build", "text-generation")
    assert not is_decoder(f"hf:{llama_dir}", "feature-extraction")
    assert not is_decoder("demo")
    assert not is_decoder(f"hf:{tmp_path}")  # no config at all


def test_load_decoder_describes_it(llama_dir):
    decoder = load_decoder(llama_dir)
    assert decoder.architecture == "LlamaForCausalLM"
    assert (decoder.max_length, decoder.vocab_size, decoder.layers) == (256, 300, 2)
    assert decoder.has_weights and decoder.parameters > 0


def test_a_decoder_without_a_tokenizer_is_one_sentence(tmp_path, decoder_factory):
    folder = decoder_factory(tmp_path / "bare", tokenizer=False)
    with pytest.raises(HastenError, match="without a tokenizer; save the model's tokenizer"):
        load_decoder(folder)


def test_a_decoder_without_weights_is_refused_unless_asked(tmp_path, decoder_factory):
    folder = decoder_factory(tmp_path / "config-only", weights=False)
    with pytest.raises(HastenError, match=r"holds no weights \(model.safetensors or "
                       r"pytorch_model.bin, sharded or not\); .* or pass `random_weights`"):
        load_decoder(folder)
    decoder = load_decoder(folder, random_weights=True)
    assert not decoder.has_weights and decoder.parameters > 0

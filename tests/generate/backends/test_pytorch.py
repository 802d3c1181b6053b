"""The PyTorch backend on the tiny decoders: every eager candidate generates exactly the tokens
asked for (bf16 and fp16 only where the CPU computes them), the eager attention computes what
sdpa does, tied weights are counted once, and the compiled candidate compiles its decode step
once and gives the baseline's tokens and logits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from hasten.generate.backends import BASELINE, CANDIDATES, BuildContext
from hasten.generate.backends.pytorch import TorchGenerator
from hasten.generate.decoder import Decoder, load_decoder
from hasten.machine import native_half

NEW_TOKENS = 6
EAGER = [name for name in CANDIDATES if name.startswith("torch/eager/")]
COMPILED = "torch/compile/fp32"


@dataclass
class Setup:
    """One tiny decoder, a seeded batch of prompts and the baseline built on it."""

    decoder: Decoder
    work: Path
    prompt: torch.Tensor
    baseline: TorchGenerator

    def build(self, name: str) -> TorchGenerator:
        """Candidate `name` built as a trial would (one thread: the suite shares its cores)."""
        context = BuildContext(self.decoder, self.work, dict(CANDIDATES[name].settings),
                               threads=1)
        return CANDIDATES[name].build(context)


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def setup(request, tmp_path_factory) -> Setup:
    """The baseline on one tiny decoder, with a batch of two prompts of 9 tokens."""
    decoder = load_decoder(request.getfixturevalue(f"{request.param}_dir"))
    work = tmp_path_factory.mktemp("work")
    seeded = torch.Generator().manual_seed(0)
    prompt = torch.randint(1, decoder.vocab_size, (2, 9), generator=seeded)
    context = BuildContext(decoder, work, dict(CANDIDATES[BASELINE].settings), threads=1)
    return Setup(decoder, work, prompt, CANDIDATES[BASELINE].build(context))


def _decode_logits(generator: TorchGenerator, prompt: torch.Tensor) -> torch.Tensor:
    """The logits each greedy step chose from: (batch, NEW_TOKENS, vocab)."""
    out = generator.run(prompt, NEW_TOKENS, return_dict_in_generate=True, output_logits=True)
    return torch.stack(out.logits, dim=1).float()


@pytest.mark.parametrize("name", EAGER)
def test_eager_candidates_generate_exactly_the_tokens_asked_for(setup: Setup, name: str) -> None:
    reason = CANDIDATES[name].skip_reason(setup.decoder, "cpu")
    dtype = CANDIDATES[name].settings["dtype"]
    if dtype in ("bf16", "fp16"):
        assert (reason is None) == native_half(dtype)
    if reason:
        pytest.skip(reason)
    tokens = setup.build(name).generate(setup.prompt, NEW_TOKENS)
    assert tokens.dtype == torch.int64
    assert tokens.shape == (2, NEW_TOKENS)
    assert int(tokens.min()) >= 0 and int(tokens.max()) < setup.decoder.vocab_size


def test_eager_attention_computes_what_sdpa_does(setup: Setup) -> None:
    eager = setup.build("torch/eager/attention-eager")
    torch.testing.assert_close(eager.logits(setup.prompt), setup.baseline.logits(setup.prompt),
                               atol=1e-4, rtol=1e-4)


def test_size_counts_each_stored_weight_once(setup: Setup) -> None:
    module = setup.baseline.module
    unique = {p.data_ptr(): p.nbytes for p in module.state_dict().values()}
    assert setup.baseline.size_bytes() == sum(unique.values())
    if setup.decoder.model_type == "gpt2":  # its output projection is the input embedding
        stored = sum(p.nbytes for p in module.state_dict().values())
        embedding = module.get_input_embeddings().weight
        assert setup.baseline.size_bytes() == stored - embedding.nbytes


def test_compiled_decode_step_compiles_once_and_matches_the_baseline(setup: Setup) -> None:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()  # graphs compiled by earlier tests in this process do not count
    compiled = setup.build(COMPILED)
    before = counters["stats"]["unique_graphs"]
    tokens = compiled.generate(setup.prompt, NEW_TOKENS)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > before, "transformers ran the decode step without compiling it"
    assert torch.equal(tokens, setup.baseline.generate(setup.prompt, NEW_TOKENS))
    torch.testing.assert_close(_decode_logits(compiled, setup.prompt),
                               _decode_logits(setup.baseline, setup.prompt),
                               atol=1e-4, rtol=1e-4)
    assert counters["stats"]["unique_graphs"] == graphs, "the same shapes compiled again"
    assert any("torch.compile" in note for note in compiled.notes)

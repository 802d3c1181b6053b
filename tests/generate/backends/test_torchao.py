"""The torchao candidates on the tiny Llama decoder: each quantizes the Linear layers its kernel
takes, is smaller than fp32 by its packed data, generates the tokens asked for and keeps its
logits close to fp32's; one is compiled as offered, the others are checked eagerly (the same
quantized weights; compiling each would only make the suite slower). The weight-only schemes
run only where the CPU has native bf16, and skip with that reason elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

pytest.importorskip("torchao")

from hasten.errors import HastenError  # noqa: E402
from hasten.generate.backends import BASELINE, CANDIDATES, BuildContext  # noqa: E402
from hasten.generate.backends import torchao as backend  # noqa: E402
from hasten.generate.backends.pytorch import TorchGenerator  # noqa: E402
from hasten.generate.decoder import Decoder, load_decoder  # noqa: E402

NEW_TOKENS = 6
TORCHAO = [name for name in CANDIDATES if name.startswith("torchao/")]
# Cosine similarity of the logits to fp32's that each scheme keeps at least.
CLOSE = {"int8-weight-only": 0.99, "int8-dynamic": 0.99, "int4-weight-only": 0.95}


@dataclass
class Setup:
    """The tiny Llama decoder, a seeded batch of prompts and the fp32 baseline's answers."""

    decoder: Decoder
    work: Path
    prompt: torch.Tensor
    logits: torch.Tensor
    size: int

    def build(self, name: str, **settings) -> TorchGenerator:
        """Candidate `name` built as a trial would, its settings overridden by `settings`,
        or the test skipped with the reason it cannot run here."""
        reason = CANDIDATES[name].skip_reason(self.decoder, "cpu")
        if reason:
            pytest.skip(reason)
        context = BuildContext(self.decoder, self.work,
                               {**CANDIDATES[name].settings, **settings}, threads=1)
        return CANDIDATES[name].build(context)


@pytest.fixture(scope="module")
def setup(llama_dir, tmp_path_factory) -> Setup:
    """The fp32 baseline's logits and size on the tiny Llama, for a batch of two prompts."""
    decoder = load_decoder(llama_dir)
    work = tmp_path_factory.mktemp("work")
    seeded = torch.Generator().manual_seed(0)
    prompt = torch.randint(1, decoder.vocab_size, (2, 9), generator=seeded)
    context = BuildContext(decoder, work, dict(CANDIDATES[BASELINE].settings), threads=1)
    baseline = CANDIDATES[BASELINE].build(context)
    return Setup(decoder, work, prompt, baseline.logits(prompt), baseline.size_bytes())


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


def test_offers_the_three_schemes_compiled() -> None:
    assert TORCHAO == [f"torchao/compile/{kind}" for kind in backend.SCHEMES]
    for name in TORCHAO:
        assert CANDIDATES[name].library == "torchao" and CANDIDATES[name].settings["compile"]


@pytest.mark.parametrize("name", TORCHAO)
def test_quantized_is_smaller_close_to_fp32_and_generates(setup: Setup, name: str) -> None:
    kind = CANDIDATES[name].settings["quantize"]
    generator = setup.build(name, compile=False)
    quantized = [layer for layer in generator.module.modules()
                 if isinstance(layer, torch.nn.Linear)
                 and type(layer.weight.data) is not torch.Tensor]
    # 2 layers of q, k, v, o, gate, up and down; the output projection (300 rows) is not a
    # multiple of 16, which the CPU int4 packing needs.
    assert len(quantized) == (14 if kind == "int4-weight-only" else 15)
    assert f"{len(quantized)} linear layers" in generator.notes[1]
    size = generator.size_bytes()
    assert size < setup.size * (0.5 if kind.startswith("int8") else 0.6)
    assert _cosine(generator.logits(setup.prompt), setup.logits) > CLOSE[kind]
    tokens = generator.generate(setup.prompt, NEW_TOKENS)
    assert tokens.dtype == torch.int64 and tokens.shape == (2, NEW_TOKENS)


def test_int8_dynamic_compiles_its_decode_step(setup: Setup) -> None:
    from torch._dynamo.utils import counters

    name = "torchao/compile/int8-dynamic"  # the scheme every CPU runs
    generator = setup.build(name)
    before = counters["stats"]["unique_graphs"]
    out = generator.run(setup.prompt, NEW_TOKENS, return_dict_in_generate=True,
                        output_logits=True)
    assert counters["stats"]["unique_graphs"] > before
    tokens = out.sequences[:, setup.prompt.shape[1]:]
    assert tokens.dtype == torch.int64 and tokens.shape == (2, NEW_TOKENS)
    # The first step is the prefill (eager in both), the second the first compiled decode
    # step: both follow from the prompt alone, whatever later tokens a near-tie may flip. The
    # compiled activation quantization may round a value the other way, hence the tolerance.
    eager = setup.build(name, compile=False).run(
        setup.prompt, NEW_TOKENS, return_dict_in_generate=True, output_logits=True)
    torch.testing.assert_close(torch.stack(out.logits[:2]), torch.stack(eager.logits[:2]),
                               atol=5e-3, rtol=0)


def test_a_decoder_without_linear_layers_is_refused_in_one_sentence(gpt2_dir, tmp_path) -> None:
    # GPT-2's blocks are Conv1D layers, and its output projection is its tied embedding.
    setup = Setup(load_decoder(gpt2_dir), tmp_path, torch.zeros(1, 1), torch.zeros(1), 0)
    with pytest.raises(HastenError, match="No Linear layer"):
        setup.build("torchao/compile/int8-dynamic")


def test_int4_group_size_comes_from_settings_or_the_hidden_size() -> None:
    assert backend.group_size({}, 4096) == 128
    assert backend.group_size({}, 64) == 64
    assert backend.group_size({}, 96) == 32
    assert backend.group_size({"group_size": 32}, 4096) == 32
    with pytest.raises(HastenError, match="group_size"):
        backend.group_size({"group_size": 48}, 4096)
    with pytest.raises(HastenError, match="multiple of 32"):
        backend.group_size({}, 100)

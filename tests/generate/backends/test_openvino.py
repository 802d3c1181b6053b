"""The OpenVINO backend on the tiny decoders: the stateful f32 IR computes the PyTorch
baseline's logits and greedy tokens, is converted once per study, its weight-compressed
variants are smaller and close, bf16 runs only where the CPU has it, and the generation loop
an export ships needs nothing but numpy and openvino."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

pytest.importorskip("openvino")

from hasten.errors import HastenError  # noqa: E402
from hasten.generate.backends import (  # noqa: E402
    BASELINE,
    CANDIDATES,
    BuildContext,
    Generator,
    ov_generate,
    pytorch,  # noqa: F401  (offers the baseline)
)
from hasten.generate.backends import openvino as backend  # noqa: E402
from hasten.generate.decoder import Decoder, load_decoder  # noqa: E402
from hasten.machine import native_half  # noqa: E402

NEW_TOKENS = 8
OPENVINO = [name for name in CANDIDATES if name.startswith("openvino/")]


@dataclass
class Setup:
    """One tiny decoder, its study folder, a prompt, the baseline's answers on it and the f32
    candidate built (converted) once."""

    decoder: Decoder
    work: Path
    prompt: torch.Tensor
    logits: torch.Tensor
    tokens: torch.Tensor
    f32: Generator

    def build(self, name: str, **settings) -> Generator:
        """Candidate `name` built in this study's folder."""
        return _build(self.decoder, self.work, name, **settings)


def _build(decoder: Decoder, work: Path, name: str, **settings) -> Generator:
    """Candidate `name` built as a trial would, its settings overridden by `settings`."""
    context = BuildContext(decoder, work, {**CANDIDATES[name].settings, **settings}, threads=2)
    return CANDIDATES[name].build(context)


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def setup(request, tmp_path_factory) -> Setup:
    """The f32 candidate and the PyTorch baseline on one tiny decoder, on a seeded prompt."""
    decoder = load_decoder(request.getfixturevalue(f"{request.param}_dir"))
    work = tmp_path_factory.mktemp(f"openvino-{request.param}")
    baseline = CANDIDATES[BASELINE].build(BuildContext(decoder, work, {"dtype": "fp32"}, 2))
    prompt = torch.randint(1, decoder.vocab_size, (2, 10),
                           generator=torch.Generator().manual_seed(3))
    return Setup(decoder, work, prompt, baseline.logits(prompt),
                 baseline.generate(prompt, NEW_TOKENS),
                 _build(decoder, work, "openvino/stateful/f32"))


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two tensors, flattened."""
    return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


def test_f32_matches_the_pytorch_baseline(setup: Setup) -> None:
    """Teacher-forced logits agree to float rounding and the greedy tokens are the same."""
    logits = setup.f32.logits(setup.prompt)
    assert logits.dtype == torch.float32 and logits.shape == setup.logits.shape
    torch.testing.assert_close(logits, setup.logits, rtol=1e-4, atol=1e-5)
    tokens = setup.f32.generate(setup.prompt, NEW_TOKENS)
    assert tokens.dtype == torch.int64 and tokens.shape == (2, NEW_TOKENS)
    assert torch.equal(tokens, setup.tokens)
    assert setup.f32.generate(setup.prompt[:1], 0).shape == (1, 0)
    assert "OpenVINO stateful KV cache" in setup.f32.notes


def test_the_ir_is_converted_once(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second build (a new trial) reuses the IR the first wrote, and no scratch folder is
    left behind."""
    xml = setup.work / "openvino-f32" / "model.xml"
    written = xml.stat().st_mtime_ns

    def convert(folder: str, target: Path) -> None:
        """Stands in for the conversion, which must not run again."""
        raise AssertionError("converted a second time")

    monkeypatch.setattr(backend, "_convert", convert)
    again = setup.build("openvino/stateful/f32")
    assert torch.equal(again.generate(setup.prompt, 3), setup.tokens[:, :3])
    assert xml.stat().st_mtime_ns == written
    assert not [p for p in setup.work.iterdir() if p.name.startswith(".")]
    assert again.size_bytes() == xml.with_suffix(".bin").stat().st_size


@pytest.mark.parametrize("name", ["openvino/stateful/int8-weights",
                                  "openvino/stateful/int4-weights"])
def test_compressed_weights_are_smaller_and_close(setup: Setup, name: str) -> None:
    """int8 and int4 weights build from the f32 IR, run, and take less disk; int8's logits
    stay close to f32's. The fixtures are 64 wide, so int4's groups of 128 shrink, and say so."""
    compressed = setup.build(name)
    logits = compressed.logits(setup.prompt)
    assert logits.shape == setup.logits.shape and logits.dtype == torch.float32
    tokens = compressed.generate(setup.prompt, NEW_TOKENS)
    assert tokens.shape == (2, NEW_TOKENS) and tokens.dtype == torch.int64
    assert compressed.size_bytes() < setup.f32.size_bytes()
    if "int8" in name:
        assert "weights: int8" in compressed.notes
        assert _cosine(logits, setup.f32.logits(setup.prompt)) > 0.999
    else:
        assert "weights: int4 asym (group 128, ratio 1.0)" in compressed.notes
        assert any("smaller int4 groups" in note for note in compressed.notes)


@pytest.mark.parametrize("settings, match", [({"group_size": 0}, "group_size"),
                                             ({"ratio": 1.5}, "ratio"),
                                             ({"mode": "nf4"}, "mode")])
def test_senseless_int4_settings_are_refused(setup: Setup, settings: dict, match: str) -> None:
    """A setting NNCF cannot honour is refused with a sentence before anything is built."""
    with pytest.raises(HastenError, match=match):
        setup.build("openvino/stateful/int4-weights", **settings)


@pytest.mark.parametrize("name", ["openvino/stateful/bf16", "openvino/stateful/int8-weights-bf16"])
def test_bf16_runs_only_on_a_cpu_with_bf16(setup: Setup, name: str) -> None:
    """Without native bf16 the candidate says why it cannot run; with it, it runs in bf16
    (the compile checks the plugin took the hint) close to f32."""
    reason = CANDIDATES[name].skip_reason(setup.decoder, "cpu")
    if not native_half("bf16"):
        assert reason and "bf16" in reason
        pytest.skip(reason)
    assert reason is None
    bf16 = setup.build(name)
    assert "inference precision: bf16 (KV cache too)" in bf16.notes
    assert _cosine(bf16.logits(setup.prompt), setup.logits) > 0.99
    assert bf16.generate(setup.prompt, NEW_TOKENS).shape == (2, NEW_TOKENS)


def test_bf16_says_why_without_bf16(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU without native bf16 (pretended here, so that any CPU checks it) the reason is
    one sentence, and the other candidates still run."""
    monkeypatch.setattr(backend, "native_half", lambda dtype: False)
    reason = CANDIDATES["openvino/stateful/bf16"].skip_reason(setup.decoder, "cpu")
    assert reason == ("this CPU has no native bf16 arithmetic, so OpenVINO's CPU plugin would "
                      "run f32 instead")
    assert CANDIDATES["openvino/stateful/int8-weights-bf16"].skip_reason(
        setup.decoder, "cpu") == reason
    assert CANDIDATES["openvino/stateful/f32"].skip_reason(setup.decoder, "cpu") is None


def test_openvino_runs_on_the_cpu_only(setup: Setup) -> None:
    """Every OpenVINO candidate refuses another device with the same sentence."""
    assert len(OPENVINO) == 5
    for name in OPENVINO:
        assert CANDIDATES[name].skip_reason(setup.decoder, "cuda") == (
            "hasten runs OpenVINO on the CPU only")


def test_the_generation_loop_needs_only_numpy_and_openvino() -> None:
    """ov_generate.py is shipped beside an exported IR, so it imports nothing else."""
    tree = ast.parse(Path(ov_generate.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "pathlib", "numpy", "openvino"}

"""The CTranslate2 backend on the tiny decoders: the f32 conversion computes the PyTorch
baseline's logits and greedy tokens, is converted once per study, int8 is smaller and close,
generation never stops at an end token, the candidates say why they cannot run, and an export's
load.py reproduces the study's tokens without hasten."""

from __future__ import annotations

import ast
import json
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

ctranslate2 = pytest.importorskip("ctranslate2")

from hasten import api  # noqa: E402
from hasten.generate import backends  # noqa: E402
from hasten.generate.backends import (  # noqa: E402
    BASELINE,
    CANDIDATES,
    BuildContext,
    Generator,
    ct2_generate,
    pytorch,  # noqa: F401  (offers the baseline)
)
from hasten.generate.backends import ctranslate2 as backend  # noqa: E402
from hasten.generate.decoder import Decoder, load_decoder  # noqa: E402

NEW_TOKENS = 8
INT8, INT8_BF16, F32 = (f"ctranslate2/generator/{p}" for p in ("int8", "int8-bf16", "f32"))


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

    def build(self, name: str) -> Generator:
        """Candidate `name` built in this study's folder."""
        return _build(self.decoder, self.work, name)


def _build(decoder: Decoder, work: Path, name: str) -> Generator:
    """Candidate `name` built as a trial would."""
    return CANDIDATES[name].build(BuildContext(decoder, work, CANDIDATES[name].settings, 2))


def _baseline(decoder: Decoder, work: Path, prompt: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The PyTorch fp32 baseline's logits and greedy tokens on `prompt`."""
    baseline = CANDIDATES[BASELINE].build(BuildContext(decoder, work, {"dtype": "fp32"}, 2))
    return baseline.logits(prompt), baseline.generate(prompt, NEW_TOKENS)


def _prompt(decoder: Decoder) -> torch.Tensor:
    """Two seeded prompts of 10 tokens."""
    return torch.randint(1, decoder.vocab_size, (2, 10),
                         generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def setup(request, tmp_path_factory) -> Setup:
    """The f32 candidate and the PyTorch baseline on one tiny decoder, on a seeded prompt."""
    decoder = load_decoder(request.getfixturevalue(f"{request.param}_dir"))
    work = tmp_path_factory.mktemp(f"ctranslate2-{request.param}")
    prompt = _prompt(decoder)
    return Setup(decoder, work, prompt, *_baseline(decoder, work, prompt),
                 _build(decoder, work, F32))


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
    assert setup.f32.notes == ["CTranslate2 float32 weights, compute type float32"]


def test_the_model_is_converted_once(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second build (a new trial) reuses the model the first wrote, and no scratch folder is
    left behind."""
    model = setup.work / "ctranslate2-f32" / "model.bin"
    written = model.stat().st_mtime_ns

    def convert(folder: str, target: Path, quantization: str) -> None:
        """Stands in for the conversion, which must not run again."""
        raise AssertionError("converted a second time")

    monkeypatch.setattr(backend, "_convert", convert)
    again = setup.build(F32)
    assert torch.equal(again.generate(setup.prompt, 3), setup.tokens[:, :3])
    assert model.stat().st_mtime_ns == written
    assert not [p for p in setup.work.iterdir() if p.name.startswith(".")]
    assert again.size_bytes() == model.stat().st_size


def test_int8_is_smaller_and_close(setup: Setup) -> None:
    """int8 weights with int8 products build, give exactly the tokens asked for, take less
    disk than f32, and their logits stay close to f32's."""
    int8 = setup.build(INT8)
    tokens = int8.generate(setup.prompt, NEW_TOKENS)
    assert tokens.dtype == torch.int64 and tokens.shape == (2, NEW_TOKENS)
    assert int8.size_bytes() < setup.f32.size_bytes()
    logits = int8.logits(setup.prompt)
    assert logits.dtype == torch.float32 and logits.shape == setup.logits.shape
    assert _cosine(logits, setup.logits) > 0.999
    assert int8.notes == ["CTranslate2 int8 weights, compute type int8_float32"]


def test_generation_never_stops_at_the_end_token(setup: Setup, tmp_path: Path) -> None:
    """With the baseline's first greedy token made the model's end token, every row still
    gets all its tokens, the same as the baseline's."""
    model = shutil.copytree(setup.work / "ctranslate2-f32", tmp_path / "model")
    vocabulary = json.loads((model / "vocabulary.json").read_text())
    config = json.loads((model / "config.json").read_text())
    config["eos_token"] = vocabulary[int(setup.tokens[0, 0])]
    (model / "config.json").write_text(json.dumps(config))
    tokens = ct2_generate.Model(model, 2, "float32").generate(setup.prompt.numpy(), NEW_TOKENS)
    assert np.array_equal(tokens, setup.tokens.numpy())


def test_seeded_weights_and_rope_parameters_convert(llama_config_dir: Path,
                                                    tmp_path: Path) -> None:
    """A folder without weights converts the seeded ones the baseline runs, and a rope theta
    that transformers 5 saves under rope_parameters reaches the converted model."""
    folder = shutil.copytree(llama_config_dir, tmp_path / "decoder")
    config = json.loads((folder / "config.json").read_text())
    config["rope_parameters"]["rope_theta"] = 37.0
    (folder / "config.json").write_text(json.dumps(config))
    decoder = load_decoder(folder, random_weights=True)
    prompt = torch.randint(1, decoder.vocab_size, (1, 40),
                           generator=torch.Generator().manual_seed(4))
    logits, tokens = _baseline(decoder, tmp_path / "work", prompt)
    f32 = _build(decoder, tmp_path / "work", F32)
    torch.testing.assert_close(f32.logits(prompt), logits, rtol=1e-4, atol=1e-5)
    assert torch.equal(f32.generate(prompt, NEW_TOKENS), tokens)


def test_int8_bf16_runs_only_where_ctranslate2_can(setup: Setup) -> None:
    """int8 weights with bf16 compute say why they cannot run where CTranslate2's CPU build
    cannot compute it (its CPU builds seen so far), and run close to f32 where it can."""
    reason = CANDIDATES[INT8_BF16].skip_reason(setup.decoder, "cpu")
    if "int8_bfloat16" not in ctranslate2.get_supported_compute_types("cpu"):
        assert reason and reason.startswith("CTranslate2 cannot compute int8_bfloat16 on this "
                                            "CPU (it can: ")
        pytest.skip(reason)
    assert reason is None
    bf16 = setup.build(INT8_BF16)
    assert _cosine(bf16.logits(setup.prompt), setup.logits) > 0.99
    assert bf16.generate(setup.prompt, NEW_TOKENS).shape == (2, NEW_TOKENS)


def test_a_compute_type_the_cpu_lacks_is_one_sentence(setup: Setup,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Where CTranslate2 cannot compute a candidate's type (pretended here, so that any CPU
    checks it) the reason names what it can compute."""
    monkeypatch.setattr(ctranslate2, "get_supported_compute_types",
                        lambda device: {"float32", "int16"})
    assert CANDIDATES[INT8].skip_reason(setup.decoder, "cpu") == (
        "CTranslate2 cannot compute int8 on this CPU (it can: float32, int16)")
    assert CANDIDATES[F32].skip_reason(setup.decoder, "cpu") is None


def test_ctranslate2_runs_converted_decoders_on_the_cpu_only(setup: Setup) -> None:
    """Every candidate refuses another device, and a decoder the converter has no loader for,
    with one sentence."""
    names = [name for name in CANDIDATES if name.startswith("ctranslate2/")]
    assert names == [INT8, INT8_BF16, F32]
    mamba = replace(setup.decoder, model_type="mamba")
    for name in names:
        assert CANDIDATES[name].skip_reason(setup.decoder, "cuda") == (
            "hasten runs CTranslate2 on the CPU only")
        assert CANDIDATES[name].skip_reason(mamba, "cpu") == (
            "CTranslate2's converter cannot convert a mamba decoder")


def test_the_generation_loop_needs_only_numpy_and_ctranslate2() -> None:
    """ct2_generate.py is shipped beside an exported model, so it imports nothing else."""
    tree = ast.parse(Path(ct2_generate.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "json", "pathlib", "numpy", "ctranslate2"}


def test_load_py_produces_the_tokens_the_study_measured(llama_dir: Path, tmp_path: Path,
                                                        outside_hasten) -> None:
    """A tiny study of the baseline and int8; the exported int8 model's load.py, run where
    hasten cannot be imported, generates the tokens the study measured."""
    with pytest.MonkeyPatch.context() as patch:
        every = backends.load_all()
        patch.setattr(backends, "load_all", lambda: {n: every[n] for n in (BASELINE, INT8)})
        study = api.optimize_inference(
            f"hf:{llama_dir}", prompt_lengths=[16], new_tokens=6, batch_sizes=[1],
            out=tmp_path / "runs", point_s=0.2, budget_s=math.inf, report=False)
        out = study.export(tmp_path / "fast", candidate=INT8)
    recipe = json.loads((out / "candidate.json").read_text())
    assert recipe["candidate"] == INT8
    assert len(recipe["continuations"]["tokens"][0]) == 6
    assert (out / "model" / "model.bin").is_file() and (out / "ct2_generate.py").is_file()
    run = outside_hasten(out, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "same tokens as the study: yes" in run.stdout

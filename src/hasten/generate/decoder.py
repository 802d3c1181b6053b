"""A decoder language model in a Hugging Face folder: recognised by its config (an
architecture ending in ForCausalLM), checked (a tokenizer, saved weights unless random ones
were asked for), and built as a transformers module in the dtype and attention a candidate
asks for."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from hasten.errors import HastenError

TASK = "text-generation"


def config_architecture(folder: Path) -> str:
    """The first architecture a folder's config.json names, or ''."""
    import json

    try:
        raw = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    architectures = raw.get("architectures") if isinstance(raw, dict) else None
    return architectures[0] if isinstance(architectures, list) and architectures else ""


def is_decoder(spec: str, task: str | None = None) -> bool:
    """Whether a model spec names a decoder language model: `--task text-generation`, or an
    hf: folder whose config's architecture is a causal language model (a ...ForCausalLM, or
    one transformers maps as such, like GPT2LMHeadModel)."""
    if task is not None:
        return task == TASK
    prefix, _, rest = spec.partition(":")
    if prefix != "hf":
        return False
    architecture = config_architecture(Path(rest))
    if architecture.endswith("ForCausalLM"):
        return True
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return bool(architecture) and architecture in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()


@dataclass(frozen=True)
class Decoder:
    """What a study needs to know about a decoder, stored with it so that reports and trials
    need not load it again."""

    folder: str
    name: str
    model_type: str
    architecture: str
    max_length: int  # positions the model can attend to: prompt plus new tokens
    vocab_size: int
    layers: int
    parameters: int
    has_weights: bool
    eos_token_id: int | None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: dict) -> Decoder:
        return cls(**stored)


def load_decoder(folder: Path, name: str | None = None,
                 random_weights: bool = False) -> Decoder:
    """Check a decoder's folder (config, tokenizer, weights) and describe it; one sentence
    says what is missing. A folder without saved weights is refused unless `random_weights`
    asks for it to be built from its config with seeded random weights."""
    from hasten.models import _read_config, _tokenizer, check_weights

    folder = Path(folder)
    if not folder.is_dir():
        raise HastenError(f"{folder} is not a model directory on this machine; pass the path of "
                          "a local Hugging Face model directory.")
    config = _read_config(folder)
    if _tokenizer(folder) is None:
        raise HastenError(f"{folder} holds a decoder without a tokenizer; save the model's "
                          "tokenizer there (tokenizer.save_pretrained).")
    weights = check_weights(folder, random_weights)
    module = build_module(folder, torch.float32, None) if weights else _from_config(config)
    text = getattr(config, "get_text_config", lambda: config)()
    eos = getattr(text, "eos_token_id", None)
    return Decoder(
        folder=str(folder.resolve()), name=name or folder.resolve().name,
        model_type=config.model_type, architecture=config_architecture(folder),
        max_length=int(getattr(text, "max_position_embeddings", 0) or 2048),
        vocab_size=int(text.vocab_size), layers=int(getattr(text, "num_hidden_layers", 0)),
        parameters=sum(p.numel() for p in module.parameters()), has_weights=bool(weights),
        eos_token_id=eos[0] if isinstance(eos, list) else eos,
    )


def _from_config(config: Any) -> torch.nn.Module:
    """The decoder its config describes, with seeded random weights (the same every time)."""
    import transformers

    torch.manual_seed(0)
    try:
        return transformers.AutoModelForCausalLM.from_config(config)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise HastenError(f"The decoder its config describes cannot be built "
                          f"({type(exc).__name__}: {exc}); check the config's sizes.") from exc


def build_module(folder: str | Path, dtype: torch.dtype = torch.float32,
                 attention: str | None = None) -> torch.nn.Module:
    """The folder's decoder as a transformers module in eval mode, in `dtype`, with the
    attention implementation `attention` (transformers' default when None). A folder without
    weights (which a study takes only when `random_weights` asks for it: load_decoder) gets
    seeded random ones: the same every time, so that trials agree."""
    import transformers

    from hasten.models import _read_config, weight_files

    folder = Path(folder)
    options = {"dtype": dtype}
    if attention:
        options["attn_implementation"] = attention
    if weight_files(folder):
        try:
            module = transformers.AutoModelForCausalLM.from_pretrained(
                folder, local_files_only=True, **options)
        except (OSError, RuntimeError, ValueError) as exc:
            raise HastenError(f"The weights in {folder} cannot be loaded "
                              f"({type(exc).__name__}: {exc}); save the model again "
                              "(model.save_pretrained).") from exc
    else:
        config = _read_config(folder)
        if attention:
            config._attn_implementation = attention
        module = _from_config(config).to(dtype)
    return module.eval()


def tokenizer(folder: str | Path) -> Any:
    """The decoder's tokenizer."""
    from hasten.models import _tokenizer

    found = _tokenizer(Path(folder))
    if found is None:
        raise HastenError(f"{folder} holds a decoder without a tokenizer; save the model's "
                          "tokenizer there (tokenizer.save_pretrained).")
    return found

"""The decoder in CTranslate2, the inference engine of faster-whisper and OpenNMT, whose int8
weights with int8 matrix products are its usual pick on a CPU. The decoder is converted by
CTranslate2's own Transformers converter, fed the module hasten builds (so a folder without
weights converts the seeded ones the baseline runs), once per study and quantization into the
backend's folder. Generation itself lives in ct2_generate.py, which needs only numpy and
ctranslate2, so that an export can ship it beside the model and reproduce the measured
tokens."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hasten.generate.backends import (
    ONE_THREAD,
    BuildContext,
    Candidate,
    Export,
    Generator,
    ensure_folder,
    offer,
)
from hasten.generate.decoder import Decoder, build_module

MODEL = "model.bin"
# The folder of each weight quantization the converter writes (CTranslate2's names).
FOLDERS = {"int8": "ctranslate2-int8", "float32": "ctranslate2-f32"}
# Special tokens the converter writes as null when the tokenizer has none (a BPE tokenizer
# without bos or unk), which CTranslate2 then cannot load: they become "", as the converter
# itself writes Llama's missing unk. Generation names no special token, so none is used.
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token")


def _convert(folder: str, target: Path, quantization: str) -> None:
    """Convert the decoder in `folder` into `target` with weights in `quantization`."""
    from ctranslate2.converters import TransformersConverter

    class Converter(TransformersConverter):
        """The converter, loading the module as hasten builds it."""

        def load_model(self, model_class: Any, model_name_or_path: str, **kwargs: Any) -> Any:
            """The decoder in f32, with seeded weights where the folder has none."""
            return build_module(model_name_or_path)

    Converter(folder).convert(str(target), quantization=quantization, force=True)
    config_file = target / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config.update({key: "" for key in SPECIAL_TOKENS if config.get(key) is None})
    config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")


def _model(ctx: BuildContext) -> Path:
    """The folder of the candidate's converted model (converted once per study)."""
    quantization = ctx.settings["quantization"]
    return ensure_folder(ctx.work / FOLDERS[quantization], MODEL,
                   lambda to: _convert(ctx.decoder.folder, to, quantization))


class CTranslate2Generator(Generator):
    """A converted model run by ct2_generate (the code an export ships)."""

    def __init__(self, folder: Path, threads: int, compute_type: str, quantization: str):
        """Load the model in `folder` with ct2_generate's settings."""
        from hasten.generate.backends.ct2_generate import Model

        self.folder = folder
        self.model = Model(folder, threads, compute_type)
        self.notes = [f"CTranslate2 {quantization} weights, compute type "
                      f"{self.model.generator.compute_type}"]

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits from one forward over the whole sequence."""
        return torch.from_numpy(self.model.logits(ids.cpu().numpy()))

    def generate(self, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
        """Greedy tokens: the prompt forwarded at once, then one token per step."""
        return torch.from_numpy(self.model.generate(ids.cpu().numpy(), new_tokens))

    def size_bytes(self) -> int:
        """The bytes of the converted model file."""
        return (self.folder / MODEL).stat().st_size


def build(ctx: BuildContext) -> CTranslate2Generator:
    """The candidate's converted model loaded with its threads and compute type."""
    return CTranslate2Generator(_model(ctx), ctx.threads, ctx.settings["compute_type"],
                                ctx.settings["quantization"])


def export(ctx: BuildContext, generator: Generator) -> Export:
    """The converted model and ct2_generate.py beside it; load.py loads the model as the study
    did and generates with ct2_generate."""
    from hasten.generate.backends import ct2_generate

    compute_type = ctx.settings["compute_type"]
    return Export(
        files={"model": _model(ctx), "ct2_generate.py": Path(ct2_generate.__file__)},
        code=["import sys", "", "import numpy as np", "",
              "sys.path.insert(0, str(here))",
              "import ct2_generate  # noqa: E402  (beside this file)", "",
              f"model = ct2_generate.Model(here / 'model', threads, {compute_type!r})", "", "",
              "def generate_ids(ids: list[list[int]], new_tokens: int) -> list[list[int]]:",
              '    """Greedy tokens after each prompt (all of one length), as the study ran '
              'them."""',
              "    return model.generate(np.array(ids, dtype=np.int64), new_tokens).tolist()"],
        requires=["ctranslate2", "numpy", "transformers (the tokenizer)"])


def _available(compute_type: str) -> Callable[[Decoder, str], str | None]:
    """Why a candidate cannot run: a device other than the CPU, a decoder the converter has no
    loader for, or a compute type CTranslate2 cannot run on this CPU."""

    def check(decoder: Decoder, device: str) -> str | None:
        """The reason, or None when the candidate can run here."""
        import ctranslate2
        from ctranslate2.converters.transformers import _MODEL_LOADERS  # keyed by config class
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

        if device != "cpu":
            return "hasten runs CTranslate2 on the CPU only"
        if CONFIG_MAPPING_NAMES.get(decoder.model_type) not in _MODEL_LOADERS:
            return f"CTranslate2's converter cannot convert a {decoder.model_type} decoder"
        supported = ctranslate2.get_supported_compute_types("cpu")
        if compute_type not in supported:
            return (f"CTranslate2 cannot compute {compute_type} on this CPU (it can: "
                    f"{', '.join(sorted(supported))})")
        return None

    return check


offer(Candidate("ctranslate2/generator/int8", "ctranslate2",
                {"quantization": "int8", "compute_type": "int8"}, build,
                available=_available("int8"), library="ctranslate2", export=export,
                tuned=ONE_THREAD))
offer(Candidate("ctranslate2/generator/int8-bf16", "ctranslate2",
                {"quantization": "int8", "compute_type": "int8_bfloat16"}, build,
                available=_available("int8_bfloat16"), library="ctranslate2", export=export,
                tuned=ONE_THREAD))
offer(Candidate("ctranslate2/generator/f32", "ctranslate2",
                {"quantization": "float32", "compute_type": "float32"}, build,
                available=_available("float32"), library="ctranslate2", export=export,
                tuned=ONE_THREAD))

"""The kinds of model a study measures: what it is fed (text, images, tensors) decides how a
batch is made, how its points are named and what an export needs beside it; OutputAdapter
gives every model one calling convention."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from hasten.errors import HastenError
from hasten.images import image_input, preparation


class OutputAdapter(torch.nn.Module):
    """Call a model with positional tensors in `input_names` order and return one tensor.

    One calling convention for every model keeps tracing, export and compilation uniform.
    """

    def __init__(self, model: torch.nn.Module, input_names: list[str], output_key: str | None):
        super().__init__()
        self.model = model
        self.input_names = list(input_names)
        self.output_key = output_key

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.output_key is None:
            out = self.model(*inputs)
        else:
            out = self.model(**dict(zip(self.input_names, inputs, strict=True)))
        return first_tensor(out, self.output_key)


def first_tensor(out: Any, key: str | None = None) -> torch.Tensor:
    """The tensor a model's output holds under `key`, or its first tensor."""
    if isinstance(out, torch.Tensor):
        return out
    if key is not None and hasattr(out, key) and getattr(out, key) is not None:
        return getattr(out, key)
    if isinstance(out, dict):
        out = list(out.values())
    elif hasattr(out, "to_tuple"):
        out = out.to_tuple()
    for item in out:
        if isinstance(item, torch.Tensor):
            return item
    raise HastenError("The model's forward returned no tensor; return a tensor or a tuple of them.")


@dataclass
class LoadedModel:
    """A model ready to measure, with what its workload needs. One subclass per kind of input
    (TextModel, ImageModel, TensorModel) holds what that kind does differently; whether it
    runs as a PyTorch module or an ONNX file is its form (`is_torch`), not its kind."""

    kind: ClassVar[str]
    # A Hugging Face model: called with its inputs by name, saved with save_pretrained.
    hugging_face: ClassVar[bool] = True
    takes_text: ClassVar[bool] = False

    spec: str
    name: str
    task: str
    input_names: list[str]
    module: torch.nn.Module | None = None
    example_inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    onnx_path: Path | None = None
    model_type: str | None = None
    num_heads: int | None = None
    hidden_size: int | None = None
    random_weights: bool = False
    # A program captured by torch.export: its layers are graph operations, not nn.Linear or
    # nn.Conv2d modules, which some passes look for.
    exported: bool = False
    fixed_batch: int | None = None  # the one batch size it takes, when its batch is not dynamic
    # The most tokens a sample may hold: a text model's own, from its config; the workload of
    # a model that takes no text records this default. (Declared after the fields: TextModel
    # makes it one, which keeps the place it has here.)
    max_length: ClassVar[int] = 512

    @property
    def is_torch(self) -> bool:
        return self.module is not None

    def info(self) -> dict:
        """What the study stores about the model."""
        params = sum(p.numel() for p in self.module.parameters()) if self.module else None
        return {
            "spec": self.spec,
            "name": self.name,
            "kind": self.kind,
            "task": self.task,
            "input_names": self.input_names,
            "model_type": self.model_type,
            "parameters": params,
            "random_weights": self.random_weights,
        }

    def point(self, batch: int, seq: int | None = None) -> str:
        """The name of the latency point of `batch` samples (of `seq` tokens, for text)."""
        return f"b{batch}"

    def example_batch(self, texts: list[str], batch: int, seq: int | None,
                      max_length: int) -> list[torch.Tensor]:
        """One batch of `batch` samples without data of its own: the example inputs tiled
        (a text model tokenizes `texts` instead)."""
        return self.tile(batch)

    def tile(self, batch: int) -> list[torch.Tensor]:
        """The example inputs repeated along the batch dimension to `batch` rows."""
        return [t[torch.arange(batch) % t.shape[0]].contiguous()
                for t in self.example_inputs.values()]

    def random_batches(self, samples: int, batch_size: int,
                       seed: int) -> list[list[torch.Tensor]]:
        """Batches shaped like the example inputs: random normal floats, and integer inputs
        cycled from the examples. All a model without data can be fed."""
        gen = torch.Generator().manual_seed(seed)
        batches = []
        for _ in range(max(1, -(-samples // batch_size))):
            rows = min(batch_size, samples)
            batches.append([
                torch.randn((rows, *t.shape[1:]), generator=gen, dtype=t.dtype)
                if t.is_floating_point() else t[torch.arange(rows) % t.shape[0]]
                for t in self.example_inputs.values()
            ])
        return batches

    def attention_mask(self, batch: list[torch.Tensor]) -> torch.Tensor | None:
        """The batch's attention mask, which pooling and fidelity weigh tokens by (text only)."""
        return None

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """The inputs' dynamic axes for export: the batch (and a text model's sequence)."""
        return {name: {0: "batch"} for name in self.input_names}

    def image_preparation(self) -> dict:
        """How an image folder is prepared for it (hasten.images): for the size and channels
        of its example inputs, unless it knows better (a Hugging Face vision model)."""
        return preparation(*image_input(self.example_inputs))

    def beside_export(self) -> dict[str, Any]:
        """What an export saves beside the model, by name: each entry writes itself to the
        path it is given (a text model's tokenizer)."""
        return {}

    def inputs_code(self, texts: list[str]) -> tuple[str, str]:
        """The import and the lines of a load.py that build two example inputs as NumPy
        arrays (a text model's from `texts`, with the tokenizer exported beside it)."""
        shapes = [list(t.shape[1:]) for t in self.example_inputs.values()]
        return "import numpy as np\n", (
            f"inputs = [np.random.rand(2, *shape).astype(np.float32) for shape in {shapes!r}]\n"
        )


@dataclass
class TextModel(LoadedModel):
    """A model fed token ids (and masks) from its tokenizer."""

    kind: ClassVar[str] = "text"
    takes_text: ClassVar[bool] = True

    tokenizer: Any = None
    max_length: int = 512

    def point(self, batch: int, seq: int | None = None) -> str:
        return f"b{batch}/s{seq}"

    def example_batch(self, texts: list[str], batch: int, seq: int | None,
                      max_length: int) -> list[torch.Tensor]:
        return self.tokenize([texts[i % len(texts)] for i in range(batch)], seq, max_length)

    def tokenize(self, texts: list[str], length: int | None, max_length: int) -> list:
        """The texts as the model's inputs: padded to `length`, or to the longest when None."""
        enc = self.tokenizer(
            texts,
            padding="max_length" if length else "longest",
            truncation=True,
            max_length=length or max_length,
            return_tensors="pt",
        )
        return [enc[name] for name in self.input_names]

    def lengths(self, texts: list[str], max_length: int) -> list[int]:
        """Each text's length in tokens, cut at `max_length`."""
        return [len(ids) for ids in self.tokenizer(texts, truncation=True,
                                                    max_length=max_length)["input_ids"]]

    def attention_mask(self, batch: list[torch.Tensor]) -> torch.Tensor | None:
        if "attention_mask" in self.input_names:
            return batch[self.input_names.index("attention_mask")]
        return None

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {name: {0: "batch", 1: "sequence"} for name in self.input_names}

    def beside_export(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.save_pretrained}

    def inputs_code(self, texts: list[str]) -> tuple[str, str]:
        return "from transformers import AutoTokenizer\n", (
            "tokenizer = AutoTokenizer.from_pretrained(here / 'tokenizer')\n"
            f"encoded = tokenizer({texts!r}, padding=True, return_tensors='np')\n"
            f"input_names = {self.input_names!r}\n"
            "inputs = [encoded[name] for name in input_names]\n"
        )


@dataclass
class ImageModel(LoadedModel):
    """A Hugging Face vision model fed `pixel_values` (N, C, H, W)."""

    kind: ClassVar[str] = "image"

    image: dict | None = None  # how its preprocessor config prepares images, when known

    def image_preparation(self) -> dict:
        return self.image or super().image_preparation()


@dataclass
class TensorModel(LoadedModel):
    """A module (py:, pt2:) or ONNX file fed tensors in order, shaped like its examples."""

    kind: ClassVar[str] = "tensor"
    hugging_face: ClassVar[bool] = False

"""Passes: one checklist technique each, a transform from one artifact to another.

A pass declares which artifact kinds it accepts, what it produces, and when it is available;
when it is not, `available` returns the reason.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hasten.models import LoadedModel


@dataclass
class Artifact:
    """A model in one form. Torch modules live in memory; the other kinds are files on disk."""

    kind: str  # "torch", "torchscript", "onnx" or "openvino"
    module: torch.nn.Module | None = None
    path: Path | None = None
    dtype: torch.dtype = torch.float32  # the float dtype a torch module's inputs must have
    autocast: torch.dtype | None = None  # run a torch module's forward under this autocast
    channels_last: bool = False  # give a torch module its 4-D float inputs channels-last
    notes: list[str] = field(default_factory=list)

    def size_bytes(self) -> int:
        """Bytes the artifact takes: its files, or a torch module's serialized state."""
        if self.path is not None:
            root = self.path.parent
            return sum(f.stat().st_size for f in root.iterdir() if f.is_file())
        import io

        buffer = io.BytesIO()
        torch.save(self.module.state_dict(), buffer)
        return buffer.tell()


@dataclass
class PassContext:
    """What a pass may use: the loaded model, sample inputs, and its own artifact folder."""

    model: LoadedModel
    sample_inputs: list[torch.Tensor]
    folder: Path
    device: str = "cpu"


@dataclass(frozen=True)
class Pass:
    name: str
    accepts: tuple[str, ...]
    produces: str
    apply: Callable[[Artifact, PassContext], Artifact]
    available: Callable[[LoadedModel, str], str | None]
    output_file: str | None = None  # the file it writes in its folder; cached between trials


REGISTRY: dict[str, Pass] = {}


def always(model: LoadedModel, device: str) -> str | None:
    return None


def needs_torch_module(model: LoadedModel, device: str) -> str | None:
    return None if model.is_torch else "the model is an ONNX file, not a PyTorch module"


def needs_package(name: str) -> Callable[[LoadedModel, str], str | None]:
    def check(model: LoadedModel, device: str) -> str | None:
        if importlib.util.find_spec(name) is None:
            return f"the package {name} is not installed (pip install {name})"
        return None

    return check


def all_of(*checks: Callable[[LoadedModel, str], str | None]):
    def check(model: LoadedModel, device: str) -> str | None:
        for c in checks:
            reason = c(model, device)
            if reason:
                return reason
        return None

    return check


def register(
    name: str,
    accepts: tuple[str, ...],
    produces: str,
    available: Callable[[LoadedModel, str], str | None] = always,
    output_file: str | None = None,
):
    """Decorator that adds a transform function to the registry as a pass."""

    def wrap(fn: Callable[[Artifact, PassContext], Artifact]) -> Callable:
        REGISTRY[name] = Pass(name, accepts, produces, fn, available, output_file)
        return fn

    return wrap


from hasten.passes import layout, onnx, openvino, precision, quantize, torchscript  # noqa: E402,F401

"""Passes: one checklist technique each, a transform from one artifact to another.

A pass declares which artifact kinds it accepts, what it produces, and when it is available;
when it is not, `available` returns the reason.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hasten.infer.workload import Workload, calibration_batches
from hasten.kinds import LoadedModel


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
    # What its passes established that a study reads as data (not text): `float_layers`.
    facts: dict = field(default_factory=dict)

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
    """What a pass may use: the loaded model, sample inputs, its own artifact folder, and the
    study's workload (calibration data for static quantization)."""

    model: LoadedModel
    sample_inputs: list[torch.Tensor]
    folder: Path
    device: str = "cpu"
    workload: Workload | None = None
    max_drop: float = 0.01

    def calibration(self) -> list[list[torch.Tensor]]:
        """The workload's calibration batches; a pass that calibrates cannot run without them."""
        if self.workload is None:
            raise ValueError("static quantization needs the study's workload to calibrate on")
        return calibration_batches(self.model, self.workload)


def export_shapes(model: LoadedModel) -> tuple:
    """The model's dynamic axes as torch.export dynamic shapes, one dict per positional input."""
    dims = {label: torch.export.Dim(label) for label in ("batch", "sequence")}
    return tuple({axis: dims[label] for axis, label in axes.items()}
                 for axes in model.dynamic_axes().values())


@dataclass(frozen=True)
class Pass:
    """A registered pass and the facts about it that the search and the reports read."""

    name: str
    accepts: tuple[str, ...]
    produces: str
    apply: Callable[[Artifact, PassContext], Artifact]
    available: Callable[[LoadedModel, str], str | None]
    output_file: str | None = None  # the file it writes in its folder; cached between trials
    calibrates: bool = False  # needs the real weights and the workload's calibration batches
    computes: str | None = None  # the type it makes the model compute in: int8, bf16, fp16
    quantizes: str | None = None  # how it quantizes activations: dynamic or static
    # A pass whose model runs no faster than this one's in its place (the same int8 with some
    # layers kept in float): the search drops a candidate its sibling shows cannot win.
    no_faster_than: str | None = None
    # What an export's load.py runs on `model` (the float model, loaded without hasten) to
    # apply this pass: (imports, lines); None when it has none, and the export then saves the
    # built candidate whole (hasten.infer.export).
    code: tuple[str, list[str]] | None = None


REGISTRY: dict[str, Pass] = {}


def always(model: LoadedModel, device: str) -> str | None:
    return None


def needs_torch_module(model: LoadedModel, device: str) -> str | None:
    return None if model.is_torch else "the model is an ONNX file, not a PyTorch module"


def not_exported(why: str) -> Callable[[LoadedModel, str], str | None]:
    """A check that refuses a program captured by torch.export (a `pt2:` model, whose layers
    are graph operations rather than modules), `why` saying what the pass would miss."""
    def check(model: LoadedModel, device: str) -> str | None:
        return why if model.exported else None

    return check


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


def slug(chain: tuple[str, ...]) -> str:
    """A chain's name as a folder name: its passes joined by '+'."""
    return "+".join(chain)


def file_prefix(chain: tuple[str, ...]) -> tuple[str, ...]:
    """The chain up to its last pass that writes a file: the part built once, in its own
    process, and shared by every candidate that starts with it (empty when none writes one)."""
    last = max((i for i, name in enumerate(chain) if REGISTRY[name].output_file), default=-1)
    return chain[: last + 1]


def register(
    name: str,
    accepts: tuple[str, ...],
    produces: str,
    available: Callable[[LoadedModel, str], str | None] = always,
    output_file: str | None = None,
    calibrates: bool = False,
    computes: str | None = None,
    quantizes: str | None = None,
    no_faster_than: str | None = None,
    code: tuple[str, list[str]] | None = None,
):
    """Decorator that adds a transform function to the registry as a pass."""

    def wrap(fn: Callable[[Artifact, PassContext], Artifact]) -> Callable:
        REGISTRY[name] = Pass(name, accepts, produces, fn, available, output_file, calibrates,
                              computes, quantizes, no_faster_than, code)
        return fn

    return wrap


def computes(chain: list[str] | tuple[str, ...], kind: str) -> bool:
    """Whether a chain makes the model compute in `kind` (int8, bf16 or fp16)."""
    return any(REGISTRY[p].computes == kind for p in chain)


def quantizes(chain: list[str] | tuple[str, ...]) -> str | None:
    """How a chain quantizes activations (dynamic or static), or None."""
    return next((REGISTRY[p].quantizes for p in chain if REGISTRY[p].quantizes), None)


# Every module of this package registers its passes (and the candidates they make) on import,
# so a new technique is one new module here.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

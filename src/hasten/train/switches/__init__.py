"""Training switches: one module per technique, as inference has one per pass family.

A switch says what it needs (`unavailable`), what it finds out about the recipe (`facts`), how
it changes the process, the model, the optimizer, the data loader and each batch, and the code
lines it recommends. Lightning Fabric's precision plugins are the model: a small class with a
fixed interface. Every module of this package is imported at start-up and registers its
switches, so a new technique is one new module here (and its test).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections import Counter
from typing import Any

import torch
from torch import nn

from hasten.train.settings import TrainSettings

BASELINE = "32-true"

# Where a switch's code lines go in the recommended setup.
STAGES = ("setup", "model", "optimizer", "wrap", "after")


class Switch:
    """One training technique. Subclasses override what they change; the defaults change
    nothing. `group` names the speed-only switches of one kind (the combined candidate takes
    the fastest of each group that paid on its own); a switch that may trade accuracy or
    memory has no group and `converges` (it always trains to the end, to show the trade)."""

    name: str = ""
    order: int = 0  # its place in the menu
    group: str | None = None
    bases: tuple[str, ...] = (BASELINE,)  # the precision modes it is measured on
    quick_bases: tuple[str, ...] = ()  # the bases it is measured on in quick mode
    converges: bool = False
    accumulation: int = 1  # micro-batches per optimizer step
    needs_example: bool = False  # whether `trained` needs the model's first inputs
    stage: str = "model"

    def unavailable(self, facts: dict, settings: TrainSettings) -> str | None:
        """Why the switch cannot run on this recipe (`facts`) with these settings, or None."""
        return None

    def facts(self, module: nn.Module, optimizer: torch.optim.Optimizer,
              dataset: Any) -> dict:
        """What the recipe offers this switch, stored with the study (JSON values)."""
        return {}

    def setup(self) -> None:
        """Set the process up before the model is built (a global mode, an import)."""

    def model(self, module: nn.Module) -> None:
        """Change the model in place, before its optimizer is built."""

    def optimizer(self, optimizer: torch.optim.Optimizer, module: nn.Module,
                  device: str) -> torch.optim.Optimizer:
        """The optimizer to train with, given the recipe's."""
        return optimizer

    def wrap(self, module: nn.Module) -> nn.Module:
        """The module to train, after the optimizer holds its parameters."""
        return module

    def loader(self, kwargs: dict, dataset: Any) -> dict:
        """The training DataLoader's keyword arguments."""
        return kwargs

    def batch(self, batch: Any) -> Any:
        """One batch as the model gets it, in training and evaluation."""
        return batch

    def trained(self, module: nn.Module, example: Any, recipe: str,
                folder: Any) -> dict:
        """After training to the end: what to add to the outcome (an artifact written).
        `example` is the model's first training call (hasten.train.example_call.ExampleCall)
        when the switch `needs_example`."""
        return {}

    def code(self, device: str) -> list[str]:
        """The lines that set the switch up, as a user would write them (at `stage`)."""
        return []

    def loader_code(self) -> list[str]:
        """Keyword arguments the switch adds to the recommended DataLoader line."""
        return []


REGISTRY: dict[str, Switch] = {}


def register(*switches: Switch) -> None:
    """Add switches to the menu, by name."""
    for switch in switches:
        REGISTRY[switch.name] = switch


def menu() -> list[Switch]:
    """Every switch, in menu order."""
    return sorted(REGISTRY.values(), key=lambda s: s.order)


def hf_models(module: nn.Module) -> list[nn.Module]:
    """The outermost transformers models inside the module (the module itself included)."""
    transformers = sys.modules.get("transformers")
    if transformers is None:
        # Nothing imported transformers, so the model holds none of its models; importing it
        # here would cost seconds in every trial process.
        return []
    PreTrainedModel = transformers.PreTrainedModel  # noqa: N806
    found: list[nn.Module] = []
    for m in module.modules():
        if isinstance(m, PreTrainedModel) and not any(m in set(f.modules()) for f in found):
            found.append(m)
    return found


def repeated_blocks(module: nn.Module) -> tuple[type, ...]:
    """Classes of the blocks a ModuleList or Sequential repeats: what activation checkpointing
    wraps in a model without a transformers switch."""
    kinds: set[type] = set()
    for m in module.modules():
        if isinstance(m, nn.ModuleList | nn.Sequential):
            counts = Counter(type(c) for c in m.children() if any(True for _ in c.parameters()))
            kinds.update(t for t, n in counts.items() if n >= 2 and t not in (nn.Linear, nn.Conv2d))
    return tuple(sorted(kinds, key=lambda t: t.__name__))


def describe(module: nn.Module, optimizer: torch.optim.Optimizer, dataset: Any) -> dict:
    """What the model, optimizer and data offer the switches, stored with the study."""
    out: dict = {"model": type(module).__name__,
                 "parameters": sum(p.numel() for p in module.parameters())}
    for switch in menu():
        out.update(switch.facts(module, optimizer, dataset))
    return out


def batch_length(batch: Any) -> int:
    """How many samples a batch holds: the length of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return len(batch)
    if isinstance(batch, dict):
        return batch_length(next(iter(batch.values())))
    if isinstance(batch, list | tuple):
        return batch_length(batch[0])
    raise TypeError(f"cannot tell the size of a batch of type {type(batch).__name__}")


def map_tensors(batch: Any, fn) -> Any:
    """The batch with `fn` applied to every tensor in it (tuples, lists and dicts kept)."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return {k: map_tensors(v, fn) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(map_tensors(v, fn) for v in batch)
    return batch


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

"""Runtimes: turn a terminal artifact into a runner on a device.

A runner takes the model's inputs as a list of tensors and returns its output tensor.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import torch

from hasten.infer import passes
from hasten.infer.passes import Artifact
from hasten.kinds import LoadedModel

Runner = Callable[[list[torch.Tensor]], torch.Tensor]


def _same_settings(settings: dict) -> dict:
    """A runtime that runs the corpus job as it runs one batch (most do)."""
    return settings


@dataclass(frozen=True)
class Tuned:
    """A runtime setting the search tries on the fastest candidate of its runtime after
    screening: its label (the candidate's name gets /label), the settings it adds, and whether
    it costs minutes to build (tried only in a study without a time budget)."""

    label: str
    settings: dict
    costly: bool = False


def _nothing_tuned(threads: int) -> tuple[Tuned, ...]:
    return ()


@dataclass(frozen=True)
class Runtime:
    name: str
    accepts: tuple[str, ...]
    build: Callable[[Artifact, dict, int, str], Runner]  # artifact, settings, threads, device
    available: Callable[[LoadedModel, str, dict], str | None]
    # The package it runs on, loaded before a trial's memory floor is read: library code is
    # not the candidate's memory.
    library: str | None = None
    # For runtimes that load a file artifact, what `hasten export` writes into load.py: given
    # the settings, the file's name and the thread count, the imports (one string) and the code
    # lines that load the file and define run(inputs), NumPy arrays in, first output out.
    snippet: Callable[[dict, str, int], tuple[str, list[str]]] | None = None
    # The settings it runs the corpus job with: a one-pass job over texts of many lengths may
    # not want what pays at one fixed shape. A runtime whose corpus settings differ has its
    # snippet define run_corpus(inputs) beside run(inputs).
    corpus_settings: Callable[[dict], dict] = _same_settings
    # For runtimes that run a PyTorch module in memory, what `hasten export` writes into
    # load.py after the lines that define `forward` (the module, called with the inputs as
    # positional tensors): given the artifact (its input dtype, autocast and layout), the
    # settings, the thread count, the device and whether the model takes float inputs, the
    # imports and the code lines that define run(inputs), torch tensors in, the output out.
    module_snippet: Callable[[Artifact, dict, int, str, bool], tuple[str, list[str]]] | None = None
    # Its searchable settings, for a study on this many threads (as Olive's passes declare
    # their search values).
    tuned: Callable[[int], tuple[Tuned, ...]] = _nothing_tuned


REGISTRY: dict[str, Runtime] = {}

def register(name: str, accepts: tuple[str, ...], available=None, library: str | None = None,
             snippet: Callable[[dict, str, int], tuple[str, list[str]]] | None = None,
             corpus_settings: Callable[[dict], dict] | None = None,
             module_snippet: Callable[[Artifact, dict, int, str, bool],
                                      tuple[str, list[str]]] | None = None,
             tuned: Callable[[int], tuple[Tuned, ...]] | None = None):
    """Decorator that adds a runner builder to the registry as a runtime."""

    def wrap(fn):
        REGISTRY[name] = Runtime(name, accepts, fn, available or (lambda m, d, s: None),
                                 library, snippet, corpus_settings or _same_settings,
                                 module_snippet, tuned or _nothing_tuned)
        return fn

    return wrap


def needs_package(name: str):
    """The pass check for an installed package, with a runtime's signature."""
    check = passes.needs_package(name)
    return lambda model, device, settings: check(model, device)


# Every module of this package registers its runtimes on import, so a new runtime is one new
# module here.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

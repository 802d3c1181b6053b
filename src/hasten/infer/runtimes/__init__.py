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
from hasten.models import LoadedModel

Runner = Callable[[list[torch.Tensor]], torch.Tensor]


def _any_shape(settings: dict) -> bool:
    """A runtime that serves every input shape with one model (most do)."""
    return False


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
    # Whether, with these settings, it compiles one model per input shape it meets.
    per_shape: Callable[[dict], bool] = _any_shape


REGISTRY: dict[str, Runtime] = {}

# The corpus job pads each batch to its longest text, rounded up to a multiple of this many
# tokens for a runtime that compiles per shape, so that it meets few shapes. Measured on the
# demo corpus (benchmarks/corpus_padding.py, VNNI Xeon): rounding to 8 cost eager fp32 up to
# 8% and OpenVINO with dynamic shapes up to 16% in items/s, for nothing; OpenVINO with static
# shapes ran as fast unrounded once compiled, but compiled 41 shapes (20.7 s) instead of 10
# (4.6 s) on the way.
PER_SHAPE_MULTIPLE = 8


def pad_multiple(runtime: str, settings: dict) -> int:
    """The multiple a corpus batch's length is rounded up to on this runtime (1: none)."""
    return PER_SHAPE_MULTIPLE if REGISTRY[runtime].per_shape(settings) else 1


def register(name: str, accepts: tuple[str, ...], available=None, library: str | None = None,
             snippet: Callable[[dict, str, int], tuple[str, list[str]]] | None = None,
             per_shape: Callable[[dict], bool] | None = None):
    """Decorator that adds a runner builder to the registry as a runtime."""

    def wrap(fn):
        REGISTRY[name] = Runtime(name, accepts, fn, available or (lambda m, d, s: None),
                                 library, snippet, per_shape or _any_shape)
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

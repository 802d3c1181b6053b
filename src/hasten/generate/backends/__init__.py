"""Generation backends: each candidate of the generation study turns the decoder into a
Generator, which computes teacher-forced logits (for fidelity) and greedy continuations with a
KV cache (for timing). Candidates are offered by the module of their technique (pytorch,
torchao, openvino, ctranslate2), as the inference study's passes are."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hasten.generate.decoder import Decoder


@dataclass
class BuildContext:
    """What a backend builds from: the decoder, a folder of its own in the study (kept between
    trials, so a conversion runs once), the candidate's settings, the threads to use, and
    token windows of the study's texts for data-aware compression."""

    decoder: Decoder
    work: Path
    settings: dict
    threads: int
    calibration: list[torch.Tensor] = field(default_factory=list)


class Generator(ABC):
    """A decoder ready to run. Token ids are int64 tensors shaped (batch, length), every row of
    a batch the same length (no padding)."""

    notes: list[str]

    @abstractmethod
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """The next-token logits at every position, teacher-forced: (batch, length, vocab),
        float32."""

    @abstractmethod
    def generate(self, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
        """Exactly `new_tokens` greedy tokens after each prompt, with a KV cache, never stopping
        at an end-of-text token: (batch, new_tokens), int64."""

    @abstractmethod
    def size_bytes(self) -> int:
        """The bytes its weights take in the form it runs (on disk for a file artifact)."""


@dataclass(frozen=True)
class Export:
    """What `hasten export` writes for a candidate: `files` (a name in the export folder ->
    the file or folder to copy there) and the lines of load.py that define
    `generate_ids(ids, new_tokens)` over lists of token ids, as the study ran it (`here` is
    the export folder and `threads` the threads the study measured with), and the packages
    they need."""

    files: dict[str, Path]
    code: list[str]
    requires: list[str]


@dataclass(frozen=True)
class Candidate:
    """One way to run the decoder: a stable name (`runtime/how/precision`), the settings its
    backend builds it with, and why it cannot run here (None when it can)."""

    name: str
    runtime: str
    settings: dict
    build: Callable[[BuildContext], Generator]
    available: Callable[[Decoder, str], str | None] = lambda decoder, device: None
    library: str | None = None
    export: Callable[[BuildContext, Generator], Export] | None = None
    # Settings the study tunes once the candidate has run: each label's overrides make a
    # variant named `name/label`, built by this candidate from its stored settings.
    tuned: dict[str, dict] = field(default_factory=dict)

    def skip_reason(self, decoder: Decoder, device: str) -> str | None:
        if self.library and importlib.util.find_spec(self.library) is None:
            return f"needs the {self.library} package (pip install {self.library})"
        return self.available(decoder, device)


def ensure_folder(folder: Path, done: str, write: Callable[[Path], None]) -> Path:
    """`folder` holding a converted model (its file `done` there): reused when there, else
    written by `write` into a temporary sibling renamed into place, so that a trial killed half
    way leaves no half model and a trial running at the same time keeps the first one
    finished. Each conversion then runs once per study."""
    if (folder / done).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        write(scratch)
        try:
            os.replace(scratch, folder)
        except OSError:
            if not (folder / done).is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def threads_of(settings: dict, study_threads: int) -> int:
    """The threads a candidate runs on: its own `threads` setting (a tuned variant's), else
    the study's."""
    return settings.get("threads", study_threads)


# A tuned variant on one thread: a small decoder's decode step is so short that waking a
# second thread costs more than it brings (CTranslate2 int8 on the 1.3M-parameter demo
# decoder, 2-core AMX Xeon: 3.6 ms per token on 2 threads, 0.14 ms on 1).
ONE_THREAD = {"1-thread": {"threads": 1}}
CANDIDATES: dict[str, Candidate] = {}
BASELINE = "torch/eager/fp32"
MODULES = ("pytorch", "torchao", "openvino", "ctranslate2")


def offer(candidate: Candidate) -> Candidate:
    """Add a candidate to the generation study's menu."""
    CANDIDATES[candidate.name] = candidate
    return candidate


def find(name: str) -> Candidate | None:
    """The candidate that builds `name`: itself, or for a tuned variant (`base/label`) its
    base, which builds it from the variant's stored settings."""
    candidates = load_all()
    return candidates.get(name) or candidates.get(name.rpartition("/")[0])


def load_all() -> dict[str, Candidate]:
    """Every candidate, its module imported (a backend whose module is missing offers none)."""
    for name in MODULES:
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            importlib.import_module(f"{__name__}.{name}")
    return CANDIDATES

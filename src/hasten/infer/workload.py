"""What the model is fed: real text through its tokenizer, images from a folder, tensors
taken from the user's batches (a DataLoader), or tensors shaped like the model's example
inputs; the points to measure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from hasten import images as image_files
from hasten.errors import HastenError
from hasten.folders import write_whole
from hasten.kinds import LoadedModel

# In a study folder: the samples a study measures (texts, labels, image paths), which its
# settings describe but do not list.
SAMPLES_FILE = "samples.json"
SAMPLE_FIELDS = ("texts", "labels", "images")
# Beside it, the input tensors taken from the user's batches, one (N, ...) tensor per input.
INPUTS_FILE = "samples.safetensors"


@dataclass
class Workload:
    """The data and the points a study measures. Stored with the study, so trials rebuild it:
    the settings keep `describe()` (the data's origin, count and hash), the study folder the
    samples themselves (`write_samples`, `read_samples`)."""

    texts: list[str]
    labels: list[int] | None
    batch_sizes: list[int]
    seq_lengths: list[int]
    eval_samples: int
    dataset_batch_size: int
    max_length: int
    sort_by_length: bool = True
    calibration_samples: int = 128
    images: list[str] = field(default_factory=list)  # image paths (labels in `labels`)
    image: dict | None = None  # how `images` are prepared (hasten.images)
    # Input tensors from the user's batches, one per model input, their samples along dim 0
    # (labels in `labels`); kept in INPUTS_FILE, never in the settings.
    inputs: list[torch.Tensor] = field(default_factory=list)
    # Where the samples came from: a data file's path, bytes and sha256, the column(s) read and
    # how many samples it held (`found`); `describe()` adds how many are used and their hash
    # (`used`, `samples_sha256`), which `read_samples` takes off again.
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Everything JSON holds, samples included: what an export's candidate.json carries
        (input tensors are not: such an export calibrates on random ones)."""
        return {k: v for k, v in vars(self).items() if k != "inputs"}

    def describe(self) -> dict:
        """The workload as a study's settings store it: its samples described (how many and
        their SHA-256 beside where they came from), not listed, so that a large data set never
        goes into the store and other samples are still other settings."""
        out = {k: v for k, v in vars(self).items() if k not in (*SAMPLE_FIELDS, "inputs")}
        if not self._unread():
            digest = hashlib.sha256(self._samples() + self._input_bytes()).hexdigest()
            out["data"] = {**self.data, "used": len(self.texts or self.images) or self.rows(),
                           "samples_sha256": digest}
        return out

    def rows(self) -> int:
        """How many samples the input tensors hold."""
        return self.inputs[0].shape[0] if self.inputs else 0

    @classmethod
    def from_dict(cls, data: dict) -> Workload:
        """A workload from to_dict's shape (samples inline: an export's candidate.json, a study
        stored before samples.json) or describe's, whose samples `read_samples` fills in."""
        return cls(**{"texts": [], "labels": None, **data})

    def write_samples(self, folder: Path) -> None:
        """Write the samples to the study folder's SAMPLES_FILE (and input tensors to
        INPUTS_FILE), whole (see write_whole)."""
        write_whole(Path(folder) / SAMPLES_FILE, self._samples())
        if self.inputs:
            write_whole(Path(folder) / INPUTS_FILE, self._input_bytes())

    def read_samples(self, folder: Path) -> None:
        """Fill in the samples of a workload read from a study's settings from the study
        folder's SAMPLES_FILE, checked against the hash the settings hold."""
        if not self._unread():
            return
        path = Path(folder) / SAMPLES_FILE
        try:
            raw = path.read_bytes()
            samples = json.loads(raw)
            # No texts or images: the samples are input tensors.
            tensors = (b"" if samples["texts"] or samples["images"]
                       else (Path(folder) / INPUTS_FILE).read_bytes())
        except FileNotFoundError as missing:
            raise HastenError(f"{missing.filename}, the samples of the study in {folder}, is "
                              "missing; start the study over with `fresh`.") from None
        if hashlib.sha256(raw + tensors).hexdigest() != self.data.get("samples_sha256"):
            raise HastenError(f"{path} does not hold the samples the study in {folder} was "
                              "run on; start the study over with `fresh`.")
        self.texts, self.labels, self.images = (samples[k] for k in SAMPLE_FIELDS)
        stored = load_tensors(tensors) if tensors else {}
        self.inputs = [stored[f"input_{i}"] for i in range(len(stored))]
        self.data = {k: v for k, v in self.data.items() if k not in ("used", "samples_sha256")}

    def _unread(self) -> bool:
        """Whether this workload came from a study's settings, its samples not read yet."""
        return not (self.texts or self.images or self.inputs) and bool(self.data.get("used"))

    def _samples(self) -> bytes:
        return json.dumps({k: getattr(self, k) for k in SAMPLE_FIELDS},
                          ensure_ascii=False).encode()

    def _input_bytes(self) -> bytes:
        """The input tensors as INPUTS_FILE holds them (safetensors: read without unpickling);
        nothing when there are none."""
        if not self.inputs:
            return b""
        return save_tensors({f"input_{i}": t.contiguous() for i, t in enumerate(self.inputs)})

    def latency_points(self, kind: str) -> list[str]:
        """Point names such as 'b8/s128' (text) or 'b8' (tensors)."""
        if kind == "text":
            return [f"b{b}/s{s}" for s in self.seq_lengths for b in self.batch_sizes]
        return [f"b{b}" for b in self.batch_sizes]

    def dataset_points(self, kind: str, ideal_batch: int | None = None) -> list[str]:
        """The dataset pass over the whole corpus, sorted by length and unsorted (text only:
        images have no length to sort by, and their latency points already use the real
        images); with `ideal_batch`, also the sorted pass at that batch size (the corpus job at
        a candidate's best batch size). The sorted passes come first: they are the corpus job,
        and a run the time budget stops keeps what it finished."""
        if kind != "text":
            return []
        points = [f"dataset/sorted/b{self.dataset_batch_size}"]
        if ideal_batch and ideal_batch != self.dataset_batch_size:
            points.append(f"dataset/sorted/b{ideal_batch}")
        return [*points, f"dataset/unsorted/b{self.dataset_batch_size}"]


def parse_point(point: str) -> dict:
    """'b8/s128' -> {'batch': 8, 'seq': 128}; 'dataset/sorted/b64' -> order and batch."""
    parts = point.split("/")
    if parts[0] == "dataset":
        return {"dataset": True, "order": parts[1], "batch": int(parts[2][1:])}
    out = {"dataset": False, "batch": int(parts[0][1:]), "seq": None}
    if len(parts) > 1:
        out["seq"] = int(parts[1][1:])
    return out


def point_kind(point: str) -> str:
    """The kind of trial a point is, stored with its row: a corpus job or a latency point."""
    return "corpus" if parse_point(point)["dataset"] else "latency"


def point_inputs(model: LoadedModel, workload: Workload, point: str) -> list[list[torch.Tensor]]:
    """The batches one point measures: one batch for a latency point, many for a dataset pass
    (each padded to its longest text)."""
    p = parse_point(point)
    if workload.images:
        return [[image_batch(workload, range(p["batch"]))]]
    if workload.inputs:
        return [input_batch(workload, range(p["batch"]))]
    if not p["dataset"]:
        return [model.example_batch(workload.texts, p["batch"], p["seq"], workload.max_length)]
    texts = list(workload.texts)  # a dataset pass: text only
    if p["order"] == "sorted":
        lengths = model.lengths(texts, workload.max_length)
        texts = [t for _, t in sorted(zip(lengths, texts, strict=True), key=lambda x: x[0])]
    b = p["batch"]
    return [model.tokenize(texts[i:i + b], None, workload.max_length)
            for i in range(0, len(texts), b)]


def image_batch(workload: Workload, indices: range) -> torch.Tensor:
    """The workload's images at `indices` (cycling when there are fewer), prepared as one batch."""
    paths = [workload.images[i % len(workload.images)] for i in indices]
    return image_files.load(paths, workload.image)


def input_batch(workload: Workload, indices: range | list[int]) -> list[torch.Tensor]:
    """The workload's input tensors at `indices` (cycling when there are fewer), one batch."""
    rows = torch.tensor([i % workload.rows() for i in indices])
    return [t[rows] for t in workload.inputs]


def eval_batches(
    model: LoadedModel, workload: Workload
) -> tuple[list[list[torch.Tensor]], list[int]]:
    """The fixed evaluation subset for fidelity, in batches (text sorted by length), and the
    order of its samples in those batches. A model that takes one batch size only gets whole
    batches of it (its samples cycled when there are fewer)."""
    if workload.images:
        count = min(workload.eval_samples, len(workload.images))
        return ([[image_batch(workload, range(s, min(s + 16, count)))]
                 for s in range(0, count, 16)], list(range(count)))
    size = model.fixed_batch or 16
    if workload.inputs:
        count = min(workload.eval_samples, workload.rows())
        if model.fixed_batch:
            count = max(size, count // size * size)
        order = [i % workload.rows() for i in range(count)]
        return [input_batch(workload, order[s:s + size]) for s in range(0, count, size)], order
    if not model.takes_text:
        batches = model.random_batches(max(size, workload.eval_samples // size * size), size,
                                       seed=1)
        return batches, list(range(size * len(batches)))
    texts = workload.texts[: workload.eval_samples]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [model.tokenize([texts[i] for i in order[s:s + 32]], None, workload.max_length)
            for s in range(0, len(order), 32)], order


def calibration_batches(model: LoadedModel, workload: Workload,
                        batch_size: int = 8) -> list[list[torch.Tensor]]:
    """Batches for static quantization's calibration: `calibration_samples` samples taken after
    the fidelity subset where the data has enough (else from its start), so calibration and the
    accuracy check see different samples when they can. Every batch has the same shape (text
    padded to the longest sample, a short last batch filled from the first samples), as
    histogram calibrators stack them."""
    n = workload.calibration_samples
    batch_size = model.fixed_batch or batch_size
    if workload.inputs:
        rest = workload.rows() - workload.eval_samples
        start = workload.eval_samples if rest >= n else 0
        chosen = _uniform(list(range(start, min(start + n, workload.rows()))), batch_size)
        return [input_batch(workload, chosen[i:i + batch_size])
                for i in range(0, len(chosen), batch_size)]
    if workload.images:
        start = workload.eval_samples if len(workload.images) - workload.eval_samples >= n else 0
        chosen = _uniform(list(range(start, min(start + n, len(workload.images)))), batch_size)
        return [[image_batch(workload, chosen[i:i + batch_size])]
                for i in range(0, len(chosen), batch_size)]
    if not model.takes_text:
        return model.random_batches(n, batch_size, seed=2)
    texts = workload.texts
    rest = texts[workload.eval_samples:]
    chosen = _uniform((rest if len(rest) >= n else texts)[:n], batch_size)
    length = max(model.lengths(chosen, workload.max_length))
    return [model.tokenize(chosen[i:i + batch_size], length, workload.max_length)
            for i in range(0, len(chosen), batch_size)]


def _uniform(items: list, batch_size: int) -> list:
    """items, its last batch filled from its start so that every batch is full."""
    if len(items) <= batch_size:
        return items
    return items + items[: -len(items) % batch_size]


def take_inputs(model: LoadedModel, batches: Iterable, limit: int
                ) -> tuple[list[torch.Tensor], list[int] | None]:
    """Up to `limit` samples from the user's batches (a DataLoader, or any iterable): each
    batch is the model's one input tensor, or a tuple or list whose first items are its input
    tensors in order and whose next item, when it is a 1-D integer tensor in every batch,
    holds class labels (accuracy is then measured). Returns one tensor per input, its samples
    along dim 0, and the labels; inputs unlike the model's example inputs are refused."""
    examples = list(model.example_inputs.values())
    parts: list[list[torch.Tensor]] = [[] for _ in examples]
    labels: list[int] | None = []
    rows = 0
    for batch in batches:
        items = [batch] if isinstance(batch, torch.Tensor) else batch
        if (not isinstance(items, tuple | list) or len(items) < len(examples)
                or not all(isinstance(t, torch.Tensor) for t in items[:len(examples)])):
            raise HastenError(f"Each batch of `data` must be {model.name}'s input tensor, or a "
                              f"tuple whose first {len(examples)} items are its input tensors "
                              f"(then labels, if any), not a {type(batch).__name__}.")
        count = items[0].shape[0] if items[0].dim() else 0
        for i, (t, example) in enumerate(zip(items[:len(examples)], examples, strict=True)):
            if t.dim() < 1 or t.shape[0] != count or t.shape[1:] != example.shape[1:] \
                    or t.dtype != example.dtype:
                raise HastenError(f"Input {i} of `data`'s batches is shaped {tuple(t.shape)} "
                                  f"({t.dtype}), and {model.name} takes "
                                  f"{('N', *example.shape[1:])} ({example.dtype}).")
            parts[i].append(t.detach().cpu())
        extra = items[len(examples)] if len(items) > len(examples) else None
        if labels is not None and isinstance(extra, torch.Tensor) and extra.shape == (count,) \
                and not (extra.is_floating_point() or extra.is_complex()
                         or extra.dtype == torch.bool):
            labels += extra.tolist()
        else:
            labels = None
        rows += count
        if rows >= limit:
            break
    if not rows:
        raise HastenError("`data` gave no samples; pass a DataLoader or a list of batches that "
                          "holds some.")
    inputs = [torch.cat(p)[:limit].contiguous() for p in parts]
    return inputs, labels[:limit] if labels else None

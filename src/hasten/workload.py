"""What the model is fed: real text through its tokenizer, images from a folder, or tensors;
the points to measure."""

from __future__ import annotations

import codecs
import csv
import importlib
import inspect
import io
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hasten import images as image_files
from hasten.errors import HastenError
from hasten.models import LoadedModel

# Standard-library modules whose documentation strings make the demo corpus: real English
# prose of naturally varying length that is on every machine with Python.
CORPUS_MODULES = (
    "abc argparse array ast asyncio base64 bisect calendar cmd codecs collections "
    "concurrent.futures configparser contextlib copy csv dataclasses datetime decimal difflib "
    "email enum fileinput fnmatch fractions ftplib functools gettext glob gzip hashlib heapq "
    "hmac html http.client http.server imaplib importlib inspect io ipaddress itertools json "
    "locale logging lzma mailbox mimetypes multiprocessing netrc numbers operator optparse os "
    "pathlib pickle pkgutil platform plistlib poplib pprint queue random re sched secrets "
    "selectors shelve shlex shutil signal smtplib socket socketserver sqlite3 ssl statistics "
    "string struct subprocess tarfile tempfile textwrap threading timeit tokenize trace "
    "traceback types typing unittest urllib.parse urllib.request uuid warnings wave weakref "
    "xml.dom.minidom xml.etree.ElementTree zipfile zlib"
).split()

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_CODE_HINTS = (">>>", "::", "==", "->", "{", "}", "[", "]", "\\", "__")


def demo_corpus(minimum: int = 1000) -> list[str]:
    """Sentences from the standard library's docstrings, de-duplicated, in a fixed order."""
    seen: dict[str, None] = {}
    for name in CORPUS_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        docs = [module.__doc__]
        for _, member in inspect.getmembers(module):
            if inspect.isclass(member) or inspect.isfunction(member):
                docs.append(member.__doc__)
                if inspect.isclass(member):
                    docs.extend(getattr(m, "__doc__", None) for m in vars(member).values())
        for doc in docs:
            for sentence in _sentences(doc):
                seen.setdefault(sentence)
    sentences = list(seen)
    if len(sentences) < minimum:
        raise HastenError(
            f"Only {len(sentences)} sentences of documentation were found on this Python "
            f"(at least {minimum} are needed); is it running with -OO?"
        )
    random.Random(0).shuffle(sentences)
    return sentences


def _sentences(doc: object) -> list[str]:
    if not isinstance(doc, str):
        return []
    out = []
    for paragraph in re.split(r"\n\s*\n", doc):
        text = " ".join(paragraph.split())
        for sentence in _SENTENCE_END.split(text):
            words = sentence.split()
            if 3 <= len(words) <= 90 and not any(h in sentence for h in _CODE_HINTS):
                if sentence[0].isupper() and sentence[-1] in ".!?:":
                    out.append(sentence)
    return out


def read_texts(
    path: Path, column: str | None = None, label_column: str | None = None
) -> tuple[list[str], list[int] | None]:
    """Texts (and integer labels) from a UTF-8 .txt (one per line), .csv or .jsonl file."""
    if not path.is_file():
        raise HastenError(f"Data file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".csv", ".jsonl"):
        raise HastenError(f"Data file {path} must be .txt, .csv or .jsonl.")
    text = _decode(path)
    rows: list[dict]
    if suffix == ".txt":
        if label_column:
            raise HastenError("A .txt file has no columns; use .csv or .jsonl for labels.")
        rows = [{"text": line.strip()} for line in text.splitlines() if line.strip()]
        column = "text"
    elif suffix == ".csv":
        rows = _csv_rows(path, text)
    else:
        rows = _jsonl_rows(path, text)
    if not rows:
        raise HastenError(f"Data file {path} holds no rows.")
    column = column or "text"
    if column not in rows[0]:
        raise HastenError(f"{path} has no column {column!r}; its columns are "
                          f"{', '.join(map(str, rows[0]))}. Choose one with --column.")
    _check_every_row(path, rows, column, "--column")
    texts = [str(r[column]).strip() for r in rows]
    if not any(texts):
        raise HastenError(f"Column {column!r} of {path} is empty.")
    labels = None
    if label_column:
        if label_column not in rows[0]:
            raise HastenError(f"{path} has no label column {label_column!r}; its columns are "
                              f"{', '.join(map(str, rows[0]))}. Choose one with --label-column.")
        _check_every_row(path, rows, label_column, "--label-column")
        try:
            labels = [int(r[label_column]) for r in rows]
        except (TypeError, ValueError) as exc:
            raise HastenError(f"Labels in column {label_column!r} must be integers.") from exc
    keep = [i for i, t in enumerate(texts) if t]
    return [texts[i] for i in keep], ([labels[i] for i in keep] if labels else None)


def _decode(path: Path) -> str:
    """A data file's text: UTF-8 (with or without a byte-order mark), else one error that says
    which encoding it seems to be in."""
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise HastenError(f"{path} is UTF-16 text, and hasten reads UTF-8; save it as UTF-8.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HastenError(f"{path} is not UTF-8 text (byte {data[exc.start]:#04x} at position "
                          f"{exc.start}); save it as UTF-8 text.") from None


def _csv_rows(path: Path, text: str) -> list[dict]:
    """A CSV file's rows by header; a file that only splits on another separator says so."""
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise HastenError(f"{path} is not a readable CSV file ({exc}).") from exc
    header = list(rows[0]) if rows else []
    if len(header) == 1:
        found = next((sep for sep in ";\t|" if sep in header[0]), None)
        if found:
            name = {";": "';'", "\t": "tabs", "|": "'|'"}[found]
            raise HastenError(f"{path} looks separated by {name}, and hasten reads "
                              "comma-separated files; save it with commas.")
    return rows


def _jsonl_rows(path: Path, text: str) -> list[dict]:
    """A JSON lines file's objects, one per non-empty line."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HastenError(f"{path} is not valid JSON lines: line {number} ({exc.msg}); "
                              "write one JSON object per line.") from exc
        if not isinstance(row, dict):
            raise HastenError(f"In {path}, line {number} is not a JSON object but a "
                              f"{type(row).__name__}; write one object per line, such as "
                              '{"text": "..."}.')
        rows.append(row)
    return rows


def _check_every_row(path: Path, rows: list[dict], column: str, flag: str) -> None:
    """Every row has a value in `column` (a short CSV row or an object without the key has
    none)."""
    missing = next((i for i, r in enumerate(rows) if r.get(column) is None), None)
    if missing is not None:
        raise HastenError(f"Row {missing + 1} of {path} has no value in column {column!r}; "
                          f"fill it in, or choose another column with {flag}.")


@dataclass
class Workload:
    """The data and the points a study measures. Stored with the study, so trials rebuild it."""

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

    def to_dict(self) -> dict:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, data: dict) -> Workload:
        return cls(**data)

    def latency_points(self, kind: str) -> list[str]:
        """Point names such as 'b8/s128' (text) or 'b8' (tensors)."""
        if kind == "text":
            return [f"b{b}/s{s}" for s in self.seq_lengths for b in self.batch_sizes]
        return [f"b{b}" for b in self.batch_sizes]

    def dataset_points(self, kind: str, ideal_batch: int | None = None) -> list[str]:
        """The dataset pass over the whole corpus, unsorted and sorted by length (text only: images
        have no length to sort by, and their latency points already use the real images); with
        `ideal_batch`, also the sorted pass at that batch size (the corpus job at a candidate's
        best batch size)."""
        if kind != "text":
            return []
        points = [f"dataset/{order}/b{self.dataset_batch_size}"
                  for order in ("unsorted", "sorted")]
        if ideal_batch and ideal_batch != self.dataset_batch_size:
            points.append(f"dataset/sorted/b{ideal_batch}")
        return points


# The sorted pass (the corpus job) pads each batch to a multiple of this many tokens, so that
# runtimes that plan per shape (OpenVINO with static shapes, torch.compile) meet few shapes.
PAD_MULTIPLE = 8


def parse_point(point: str) -> dict:
    """'b8/s128' -> {'batch': 8, 'seq': 128}; 'dataset/sorted/b64' -> order and batch."""
    parts = point.split("/")
    if parts[0] == "dataset":
        return {"dataset": True, "order": parts[1], "batch": int(parts[2][1:])}
    out = {"dataset": False, "batch": int(parts[0][1:]), "seq": None}
    if len(parts) > 1:
        out["seq"] = int(parts[1][1:])
    return out


def tokenize(model: LoadedModel, texts: list[str], length: int | None, max_length: int,
             multiple: int | None = None) -> list:
    """Tokenize to the model's inputs: padded to `length`, or to the longest text when None
    (rounded up to a multiple of `multiple`, when given)."""
    enc = model.tokenizer(
        texts,
        padding="max_length" if length else "longest",
        truncation=True,
        max_length=length or max_length,
        pad_to_multiple_of=multiple,
        return_tensors="pt",
    )
    return [enc[name] for name in model.input_names]


def attention_mask(model: LoadedModel, batch: list[torch.Tensor]) -> torch.Tensor | None:
    """A text batch's attention mask, which pooling and fidelity weigh tokens by; else None."""
    if model.kind == "text" and "attention_mask" in model.input_names:
        return batch[model.input_names.index("attention_mask")]
    return None


def tile(model: LoadedModel, batch: int) -> list[torch.Tensor]:
    """The model's example inputs repeated along the batch dimension to `batch` rows."""
    out = []
    for t in model.example_inputs.values():
        index = torch.arange(batch) % t.shape[0]
        out.append(t[index].contiguous())
    return out


def point_inputs(model: LoadedModel, workload: Workload, point: str) -> list[list[torch.Tensor]]:
    """The batches one point measures: one batch for a latency point, many for a dataset pass."""
    p = parse_point(point)
    if workload.images:
        return [[image_batch(workload, range(p["batch"]))]]
    if model.kind != "text":
        return [tile(model, p["batch"])]
    if not p["dataset"]:
        texts = [workload.texts[i % len(workload.texts)] for i in range(p["batch"])]
        return [tokenize(model, texts, p["seq"], workload.max_length)]
    texts = list(workload.texts)
    if p["order"] == "sorted":
        lengths = [len(ids) for ids in model.tokenizer(texts, truncation=True,
                                                       max_length=workload.max_length)["input_ids"]]
        texts = [t for _, t in sorted(zip(lengths, texts, strict=True), key=lambda x: x[0])]
    b = p["batch"]
    multiple = PAD_MULTIPLE if p["order"] == "sorted" else None
    return [tokenize(model, texts[i:i + b], None, workload.max_length, multiple)
            for i in range(0, len(texts), b)]


def image_batch(workload: Workload, indices: range) -> torch.Tensor:
    """The workload's images at `indices` (cycling when there are fewer), prepared as one batch."""
    paths = [workload.images[i % len(workload.images)] for i in indices]
    return image_files.load(paths, workload.image)


def eval_batches(
    model: LoadedModel, workload: Workload
) -> tuple[list[list[torch.Tensor]], list[int]]:
    """The fixed evaluation subset for fidelity, in batches (text sorted by length), and the
    order of its samples in those batches."""
    if workload.images:
        count = min(workload.eval_samples, len(workload.images))
        return ([[image_batch(workload, range(s, min(s + 16, count)))]
                 for s in range(0, count, 16)], list(range(count)))
    if model.kind != "text":
        batches = _random_batches(model, max(16, workload.eval_samples // 16 * 16), 16, seed=1)
        return batches, list(range(16 * len(batches)))
    texts = workload.texts[: workload.eval_samples]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [tokenize(model, [texts[i] for i in order[s:s + 32]], None, workload.max_length)
            for s in range(0, len(order), 32)], order


def calibration_batches(model: LoadedModel, workload: Workload,
                        batch_size: int = 8) -> list[list[torch.Tensor]]:
    """Batches for static quantization's calibration: `calibration_samples` samples taken after
    the fidelity subset where the data has enough (else from its start), so calibration and the
    accuracy check see different samples when they can. Every batch has the same shape (text
    padded to the longest sample, a short last batch filled from the first samples), as
    histogram calibrators stack them."""
    n = workload.calibration_samples
    if workload.images:
        start = workload.eval_samples if len(workload.images) - workload.eval_samples >= n else 0
        chosen = _uniform(list(range(start, min(start + n, len(workload.images)))), batch_size)
        return [[image_batch(workload, chosen[i:i + batch_size])]
                for i in range(0, len(chosen), batch_size)]
    if model.kind != "text":
        return _random_batches(model, n, batch_size, seed=2)
    texts = workload.texts
    rest = texts[workload.eval_samples:]
    chosen = _uniform((rest if len(rest) >= n else texts)[:n], batch_size)
    length = max(len(ids) for ids in model.tokenizer(chosen, truncation=True,
                                                     max_length=workload.max_length)["input_ids"])
    return [tokenize(model, chosen[i:i + batch_size], length, workload.max_length)
            for i in range(0, len(chosen), batch_size)]


def _uniform(items: list, batch_size: int) -> list:
    """items, its last batch filled from its start so that every batch is full."""
    if len(items) <= batch_size:
        return items
    return items + items[: -len(items) % batch_size]


def _random_batches(model: LoadedModel, samples: int, batch_size: int,
                    seed: int) -> list[list[torch.Tensor]]:
    """Batches shaped like the model's example inputs: random normal floats, and integer
    inputs cycled from the examples. All a tensor model without data can be fed."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(max(1, -(-samples // batch_size))):
        rows = min(batch_size, samples)
        batches.append([
            torch.randn((rows, *t.shape[1:]), generator=gen, dtype=t.dtype)
            if t.is_floating_point() else t[torch.arange(rows) % t.shape[0]]
            for t in model.example_inputs.values()
        ])
    return batches

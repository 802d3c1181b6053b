"""Data every study reads: texts from a file or the bundled demo corpus, and a model's inputs
built from them (tokens, attention masks, example inputs tiled to a batch)."""

from __future__ import annotations

import codecs
import csv
import hashlib
import importlib
import inspect
import io
import json
import math
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from hasten.errors import HastenError

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

# The largest data file hasten reads. Reading parses the whole file in memory (128 MB of CSV
# took 1 to 3 s and about 800 MB of memory on a 2-core machine), and a study feeds its model a
# sample of a thousand texts or so (hasten.infer.run.MAX_TEXTS), so a larger file would only
# cost more.
MAX_DATA_MB = 128

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
        for doc in docstrings(module, lambda m: inspect.isclass(m) or inspect.isfunction(m)):
            for sentence in _sentences(doc):
                seen.setdefault(sentence)
    sentences = list(seen)
    require_sentences(sentences, minimum)
    random.Random(0).shuffle(sentences)
    return sentences


def require_sentences(sentences: list[str], minimum: int) -> None:
    """Refuse a corpus of fewer than `minimum` sentences: a Python run with -OO has no
    docstrings to read."""
    if len(sentences) < minimum:
        raise HastenError(
            f"Only {len(sentences)} sentences of documentation were found on this Python "
            f"(at least {minimum} are needed); is it running with -OO?"
        )


def docstrings(module: ModuleType, members: Callable[[object], bool]) -> list[str | None]:
    """The docstrings of `module`, of the members `members` accepts and of what those classes
    hold, less anything defined outside the standard library (transformers adds a method to
    logging.Logger), so that a corpus never depends on what the process imported first."""
    docs = [module.__doc__]
    for _, member in inspect.getmembers(module):
        if members(member) and _stdlib(member):
            docs.append(member.__doc__)
            if inspect.isclass(member):
                docs.extend(getattr(m, "__doc__", None) for m in vars(member).values()
                            if _stdlib(m))
    return docs


def _stdlib(thing: object) -> bool:
    """Whether `thing` was defined in the standard library, or does not say where."""
    module = getattr(thing, "__module__", None)
    return not isinstance(module, str) or module.partition(".")[0] in sys.stdlib_module_names


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
    """Texts (and integer labels) from a UTF-8 .txt (one per line), .csv or .jsonl file of at
    most MAX_DATA_MB."""
    if not path.is_file():
        raise HastenError(f"Data file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".csv", ".jsonl"):
        raise HastenError(f"Data file {path} must be .txt, .csv or .jsonl.")
    size = path.stat().st_size
    if size > MAX_DATA_MB * 2**20:
        # Rounded up, so that a file just over the limit never reads as the limit itself.
        shown = (f"{math.ceil(size / 2**30 * 10) / 10:g} GB" if size >= 2**30
                 else f"{math.ceil(size / 2**20 * 10) / 10:g} MB")
        raise HastenError(f"{path} is {shown}, and hasten reads data files up to {MAX_DATA_MB} "
                          "MB; pass a sample of it, such as its first 10,000 lines "
                          f"(head -n 10000 {path.name} > sample{suffix}).")
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
                          f"{', '.join(map(str, rows[0]))}. Choose one with `column`.")
    _check_every_row(path, rows, column, "`column`")
    texts = [str(r[column]).strip() for r in rows]
    if not any(texts):
        raise HastenError(f"Column {column!r} of {path} is empty.")
    labels = None
    if label_column:
        if label_column not in rows[0]:
            raise HastenError(f"{path} has no label column {label_column!r}; its columns are "
                              f"{', '.join(map(str, rows[0]))}. Choose one with `label_column`.")
        _check_every_row(path, rows, label_column, "`label_column`")
        try:
            labels = [int(r[label_column]) for r in rows]
        except (TypeError, ValueError) as exc:
            raise HastenError(f"Labels in column {label_column!r} must be integers.") from exc
    keep = [i for i, t in enumerate(texts) if t]
    return [texts[i] for i in keep], ([labels[i] for i in keep] if labels else None)


def describe_file(path: Path) -> dict:
    """Where a data file is and what it holds, as a study stores it: its absolute path, size
    and SHA-256 (read in chunks)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(2**20):
            digest.update(chunk)
    return {"path": str(path.resolve()), "bytes": path.stat().st_size,
            "sha256": digest.hexdigest()}


def sample_indices(count: int, limit: int) -> list[int]:
    """Which of `count` items a study keeps: all up to `limit`, else a fixed random sample of
    `limit` in their order (spread over the whole file, not only its start)."""
    if count <= limit:
        return list(range(count))
    return sorted(random.Random(0).sample(range(count), limit))


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

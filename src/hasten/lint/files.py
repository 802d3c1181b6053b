"""The files hasten lint reads and how its fixes are written, so that a fix never damages a
file: folders are walked without following links or entering environments and caches, each
file is decoded as it declares, and a fix is written back atomically, in the same encoding and
line endings, only to a plain file that has not changed since it was read."""

from __future__ import annotations

import io
import os
import stat
import tempfile
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hasten.errors import HastenError

# Folders a walk leaves out besides hidden ones: caches and installed packages, not project code.
SKIPPED = frozenset({"__pycache__", "node_modules", "site-packages"})
# A file or folder whose presence marks a Python environment (venv/virtualenv, conda).
ENVIRONMENT = ("pyvenv.cfg", "conda-meta")


@dataclass(frozen=True)
class Text:
    """A file's text as read, and what writing a fix back needs: its bytes, encoding and status."""

    text: str
    encoding: str
    data: bytes
    status: os.stat_result


def python_files(paths: list[Path]) -> list[Path]:
    """The files to lint: each file given, and the .py files under each folder, in a stable
    order. Every path is checked here, so bad input stops the run before any file is written."""
    out = []
    for path in paths:
        try:
            if path.is_dir():
                out.extend(sorted(_walk(path)))
            elif path.is_file():
                out.append(path)
            elif path.is_symlink():
                raise HastenError(f"{path} is a symbolic link to {os.readlink(path)}, which "
                                  "does not exist.")
            elif path.exists():
                raise HastenError(f"{path} is neither a file nor a folder.")
            else:
                raise HastenError(f"{path} does not exist.")
        except OSError as exc:
            raise HastenError(f"{exc.filename or path} cannot be read: {exc.strerror}.") from None
    return list(dict.fromkeys(out))


def _walk(folder: Path) -> Iterator[Path]:
    """The .py files under a folder. Links are not followed (a link is neither a file nor a
    folder here), and hidden folders, caches, installed packages and environments are left out."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                sub = Path(entry.path)
                if not (entry.name.startswith(".") or entry.name in SKIPPED
                        or any((sub / marker).exists() for marker in ENVIRONMENT)):
                    yield from _walk(sub)
            elif entry.is_file(follow_symlinks=False) and entry.name.endswith(".py"):
                yield Path(entry.path)


def read(path: Path) -> Text:
    """A Python file's text, decoded as it declares (a BOM or a coding comment, else UTF-8),
    line endings as they are. Raises OSError, SyntaxError (a bad declaration) or
    UnicodeDecodeError."""
    with path.open("rb") as file:
        status = os.fstat(file.fileno())
        data = file.read()
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    return Text(data.decode(encoding), encoding, data, status)


def write(path: Path, text: str, before: Text) -> str | None:
    """Write a fixed text over the file read as `before`; None when written, else why not (a
    link or hard link, a change since it was read, an OS error)."""
    if path.is_symlink():
        return (f"not fixed: it is a symbolic link to {os.readlink(path)}; give hasten lint "
                "--fix the file it points to")
    if before.status.st_nlink > 1:
        return "not fixed: it has other hard links, which would keep the old text"
    try:
        written = _replace(path, text.encode(before.encoding), before)
    except OSError as exc:
        return f"not fixed: it cannot be written ({exc.strerror or exc})"
    return None if written else "not fixed: it changed after hasten read it; run the fix again"


def _replace(path: Path, data: bytes, before: Text) -> bool:
    """Write data to a new file beside path (with path's permission bits and owner), sync it,
    and rename it over path unless path changed since read: a crash or a full disk leaves the
    old file whole. Whether it replaced path."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(handle, "wb") as temp:
            temp.write(data)
            made = os.fstat(handle)
            if (made.st_uid, made.st_gid) != (before.status.st_uid, before.status.st_gid):
                os.chown(name, before.status.st_uid, before.status.st_gid)
            os.chmod(name, stat.S_IMODE(before.status.st_mode))  # after chown, which clears some
            temp.flush()
            os.fsync(handle)
        unchanged = _same(path, before)
        if unchanged:
            os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    if not unchanged:
        Path(name).unlink()
    return unchanged


def _same(path: Path, before: Text) -> bool:
    """Whether path is still the file read as `before`: the same file, size, time and bytes."""
    try:
        now = os.lstat(path)
        return ((now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns)
                == (before.status.st_dev, before.status.st_ino, before.status.st_size,
                    before.status.st_mtime_ns)
                and path.read_bytes() == before.data)
    except FileNotFoundError:
        return False

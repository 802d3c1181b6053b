"""The folders hasten writes, and the rules that keep a user's files safe: hasten writes into
or deletes only a folder it made (one that carries its marker), locks a study folder while a
run holds it, writes every file whole (a temporary name, then a rename), and trusts the code a
study names only when this account made the study."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from hasten.errors import HastenError
from hasten.store import Meta

MARKER = ".hasten"  # in every folder hasten made: {"kind": "study" | "export", "id", "files"}
LOCK = ".hasten.lock"  # in a study folder: locked (flock) while a run holds the study


def check_name(name: str) -> str:
    """A study name that names one folder inside `out`, nothing above or beside it."""
    if (not name or name.strip() != name or name in (".", "..") or "/" in name
            or "\\" in name or "\0" in name):
        raise HastenError(f"The study name {name!r} cannot be a folder name; use a plain name "
                          "without path separators, such as my-model.")
    return name


def study_folder(out: str | Path, name: str, suffix: str = "") -> Path:
    """The folder of the study `name` inside `out`, the name checked first."""
    return Path(out) / (check_name(name) + suffix)


def write_whole(path: Path, data: str | bytes) -> Path:
    """Write a file under a temporary name beside it, then rename it into place, so that a
    kill or a full disk never leaves half a file where a whole one was."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def marker(folder: Path) -> dict | None:
    """The marker of a folder hasten made, or None."""
    try:
        found = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and found.get("kind") else None


def _legacy_study(folder: Path) -> bool:
    """A study written before folders carried the marker: a hasten store with its settings."""
    from hasten.store import Store

    if not (folder / "study.sqlite").is_file():
        return False
    store = Store(folder, readonly=True)  # a database that is not a store: its own sentence
    try:
        return store.meta(Meta.CONFIG) is not None
    finally:
        store.close()


def claim(folder: Path, kind: str, what: str) -> dict:
    """Make `folder` hasten's (`kind` "study" or "export"), or check that it already is: a new
    or empty folder is marked; one that holds anything else is refused, whatever the flags, so
    that nothing of the user's is written over. Returns the marker."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise HastenError(f"{folder} is a file, not a folder; choose another {what}.")
    found = marker(folder)
    if found is None and folder.is_dir() and _legacy_study(folder) and kind == "study":
        # A run on it: this account works on the study, so it is remembered as its own.
        found = {"kind": "study", "id": uuid.uuid4().hex, "files": []}
        write_whole(folder / MARKER, json.dumps(found))
        remember(found["id"])
    if found is not None:
        if found["kind"] != kind:
            raise HastenError(f"{folder} holds a hasten {found['kind']}, not a {kind}; choose "
                              f"another {what}.")
        return found
    if folder.is_dir() and any(folder.iterdir()):
        raise HastenError(f"{folder} already exists and was not made by hasten, so hasten will "
                          f"not write into it; choose another {what}.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HastenError(f"The folder {folder} cannot be created ({exc.strerror}); choose "
                          f"another {what}.") from exc
    made = {"kind": kind, "id": uuid.uuid4().hex, "files": []}
    write_whole(folder / MARKER, json.dumps(made))
    if kind == "study":
        remember(made["id"])
    return made


def clear(folder: Path) -> None:
    """Empty a folder hasten made (a study started over, an export written again): a study
    loses everything but its marker and lock; an export loses only the files it wrote."""
    found = marker(folder)
    if found is None:
        raise HastenError(f"{folder} was not made by hasten; it is left as it is.")
    if found["kind"] == "study":
        doomed = [p for p in Path(folder).iterdir() if p.name not in (MARKER, LOCK)]
    else:
        doomed = [Path(folder) / name for name in found.get("files", [])]
    for path in doomed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    if found["kind"] == "export":
        write_whole(Path(folder) / MARKER, json.dumps({**found, "files": []}))


def note_files(folder: Path, names: list[str]) -> None:
    """Record the files an export wrote, so that writing it again removes only those."""
    found = marker(folder) or {}
    files = sorted({*found.get("files", []), *names})
    write_whole(Path(folder) / MARKER, json.dumps({**found, "files": files}))


class StudyLock:
    """An exclusive lock on a study folder for as long as a run holds it. It is an flock on
    the folder's lock file, so the operating system releases it when the process dies: a
    `kill -9` leaves no stale lock."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            self.fd = -1
            raise HastenError(f"{folder} is in use by another hasten run (process {holder}); "
                              "wait for it to end, or give this run another name.") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

    def __del__(self) -> None:
        self.release()

    def release(self) -> None:
        if getattr(self, "fd", -1) >= 0:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = -1


def open_study_folder(folder: Path, fresh: bool) -> StudyLock:
    """Claim and lock a study folder for a run; with `fresh`, empty it once locked."""
    claim(folder, "study", "`out` or `name`")
    lock = StudyLock(folder)
    if fresh:
        try:
            clear(folder)
        except BaseException:
            lock.release()
            raise
    return lock


def state_dir() -> Path:
    """Where hasten keeps what it knows about this account: HASTEN_HOME, or the XDG state
    folder."""
    if os.environ.get("HASTEN_HOME"):
        return Path(os.environ["HASTEN_HOME"])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "hasten"


def remember(study_id: str) -> None:
    """Add a study this account made to the account's list (one id a line, appended)."""
    with contextlib.suppress(OSError):
        state_dir().mkdir(parents=True, exist_ok=True)
        with (state_dir() / "studies").open("a") as out:
            out.write(study_id + "\n")


def made_here(folder: Path) -> bool:
    """Whether this account made the study in `folder` (its id is on the account's list):
    a folder copied from elsewhere is not, and the code it names is not run unasked."""
    found = marker(folder)
    if found is None:
        return False
    try:
        known = (state_dir() / "studies").read_text().split()
    except OSError:
        return False
    return found["id"] in known


def check_trusted(folder: Path, spec: str, verb: str, trust_code: bool) -> None:
    """Refuse to run the Python file a study's `py:` spec names unless this account made the
    study or the user said to trust it."""
    if not spec.startswith("py:") or trust_code or made_here(folder):
        return
    file = spec[3:].rpartition(":")[0] or spec[3:]
    raise HastenError(f"To {verb}, hasten would run {file}, the Python file this study's model "
                      f"names, and {folder} was not made by this account; read that file, then "
                      "pass --trust-code to run it.")

"""The study store: one SQLite database per study folder, written as each trial ends.

Trial processes write their own rows, so a finished trial survives the parent being killed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import sqlite3
import time
from enum import StrEnum
from pathlib import Path
from typing import TypedDict

from hasten.errors import HastenError

# The layout of the tables below; a database of another version is refused, not misread.
# Version 2 added the kind of each trial and its details apart from its timing; version 3
# each result's facts (what its passes established, as data), which `_migrate` adds to a
# version 2 study.
SCHEMA_VERSION = 3


class Meta(StrEnum):
    """The keys of a study's meta table, each declared once: what the study decided beside
    its rows. Their values are the strings stored, so folders written before read the same."""

    SCHEMA_VERSION = "schema_version"  # the store's schema version
    CONFIG = "config"  # the study's settings (Settings.to_dict)
    MACHINE = "machine"  # what it ran on (executors' machine())
    MACHINE_TYPE = "machine_type"  # the kind of machine, for compare's labels
    FINISHED = "finished"  # True once every phase ran
    BUDGET = "budget"  # the time budget: seconds, and what it cut
    CONFIRMATION = "confirmation"  # the confirmation's plan and results
    BASELINE_SECONDS = "baseline_seconds"  # how long the baseline took, by phase
    FAILED_BUILDS = "failed_builds"  # inference: {artifact prefix slug: why its build failed}
    AUDIT = "audit"  # training: the numerics audit's verdict (TrainState)
    TOO_SLOW = "too_slow"  # training: precision modes not trained to the end, with why
    COMBINED = "combined"  # training: the combination of the best switches
    BATCH_SEARCH = "batch_search"  # training: the batch-size search's probes and summary
    RAY_RUNS = "ray_runs"  # the Ray runs whose rows were merged in (ray_executor)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    name TEXT PRIMARY KEY, position INTEGER, passes TEXT, runtime TEXT, settings TEXT,
    skipped_reason TEXT
);
CREATE TABLE IF NOT EXISTS results (
    candidate TEXT PRIMARY KEY, status TEXT NOT NULL, error TEXT, fidelity TEXT,
    passed INTEGER, gate_reason TEXT, one_time TEXT, size_bytes INTEGER, notes TEXT,
    finished REAL, facts TEXT
);
CREATE TABLE IF NOT EXISTS trials (
    candidate TEXT NOT NULL, point TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
    error TEXT, latency TEXT, throughput REAL, items INTEGER, peak_mb REAL, details TEXT,
    finished REAL,
    PRIMARY KEY (candidate, point)
);
"""


class CandidateRow(TypedDict):
    """A candidate as registered: its place in the menu, the passes and runtime that build
    it, its settings, and why it cannot run here (None when it can)."""

    name: str
    position: int
    passes: list[str]
    runtime: str
    settings: dict
    skipped_reason: str | None


class Result(TypedDict):
    """How a candidate ended: its status and error, its fidelity against the baseline and
    whether that passed (with the reason when not), its one-time costs, artifact size, the
    notes its passes left and the facts they established (`float_layers`: [kept in float,
    ranked])."""

    candidate: str
    status: str
    error: str | None
    fidelity: dict | None
    passed: bool | None
    gate_reason: str | None
    one_time: dict | None
    size_bytes: int | None
    notes: list[str] | None
    finished: float
    facts: dict


class Trial(TypedDict):
    """One trial: a candidate at a point, of a kind (latency, corpus, speed, probe, converge,
    generate), its status and error, its timing statistics (`latency`: p50, p90, ... in ms),
    throughput, items, peak memory and what else it recorded (`details`)."""

    candidate: str
    point: str
    kind: str
    status: str
    error: str | None
    latency: dict | None
    throughput: float | None
    items: int | None
    peak_mb: float | None
    details: dict | None
    finished: float


class Store:
    """Read and write one study's database."""

    def __init__(self, folder: Path, readonly: bool = False):
        """Open (and with `readonly` False, create) the folder's database. A read-only store
        writes nothing, so a study can be read from a folder the reader may not write to."""
        self.folder = Path(folder)
        self.path = self.folder / "study.sqlite"
        if readonly:
            self.db = _open_readonly(self.path)
        else:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise HastenError(f"The study folder {self.folder} cannot be created "
                                  f"({exc.strerror}); choose an `out` folder you can write "
                                  "to.") from exc
            try:
                self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            except sqlite3.Error as exc:
                raise HastenError(f"{self.path} cannot be opened ({exc}); check that its "
                                  "folder is one you can write to.") from exc
        self.db.row_factory = sqlite3.Row
        try:
            earlier = self._check_schema()
            if earlier and not readonly:
                _migrate(self.db)
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.executescript(SCHEMA)
                self.db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)",
                                (Meta.SCHEMA_VERSION.value, json.dumps(SCHEMA_VERSION)))
        except sqlite3.DatabaseError as exc:
            self.db.close()
            if exc.sqlite_errorname in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
                raise HastenError(f"{self.path} is not a SQLite database, or a damaged one "
                                  f"({exc}); move it away, or start over with `fresh`.") from exc
            raise HastenError(f"{self.path} cannot be opened ({exc}); check that its folder "
                              "is one you can write to.") from exc
        except HastenError:
            self.db.close()
            raise

    def _check_schema(self) -> bool:
        """Refuse a database that another program or another version of hasten wrote: its
        rows would be misread. A new, empty database passes. True for a version 2 study,
        which a writer migrates and a reader reads as it is."""
        found = _columns(self.db)
        if not found:
            return False
        expected = _expected_columns()
        if found.get("meta") != expected["meta"]:
            raise HastenError(f"{self.path} is not a hasten study database (it holds the tables "
                              f"{', '.join(sorted(found))}); point at a study folder, or move "
                              "the file away.")
        # A study written before the version was stored has this version's tables.
        row = self.db.execute("SELECT value FROM meta WHERE key = ?",
                              (Meta.SCHEMA_VERSION.value,)).fetchone()
        version = row[0] if row else json.dumps(SCHEMA_VERSION)
        earlier = (version == json.dumps(SCHEMA_VERSION - 1)
                   and found.get("results") == expected["results"][:-1])
        if earlier:
            version, found = json.dumps(SCHEMA_VERSION), {**found, "results": expected["results"]}
        other = [name for name in expected if name in found and found[name] != expected[name]]
        if version != json.dumps(SCHEMA_VERSION) or other:
            what = (f"schema version {version}" if version != json.dumps(SCHEMA_VERSION)
                    else f"other columns in its {', '.join(other)} table")
            raise HastenError(f"{self.path} was written by another version of hasten ({what}; "
                              f"this one reads schema version {SCHEMA_VERSION}); open it with "
                              "that version, or start over with `fresh`.")
        return earlier

    def close(self) -> None:
        self.db.close()

    def settle(self) -> None:
        """Fold the write-ahead log back into the database file once the run's writers are
        done, so that readers of the finished study need no log files beside it."""
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA journal_mode=DELETE")

    def set_meta(self, key: Meta, value: object) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                        (Meta(key).value, json.dumps(value)))

    def meta(self, key: Meta, default: object = None) -> object:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?",
                              (Meta(key).value,)).fetchone()
        return json.loads(row["value"]) if row else default

    def add_candidate(self, position: int, name: str, passes: list[str], runtime: str,
                      settings: dict, skipped_reason: str | None) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO candidates VALUES (?, ?, ?, ?, ?, ?)",
            (name, position, json.dumps(passes), runtime, json.dumps(settings), skipped_reason),
        )

    def candidates(self) -> list[CandidateRow]:
        rows = self.db.execute("SELECT * FROM candidates ORDER BY position").fetchall()
        return [
            {**dict(r), "passes": json.loads(r["passes"]), "settings": json.loads(r["settings"])}
            for r in rows
        ]

    def put_result(self, candidate: str, status: str, error: str | None = None,
                   fidelity: dict | None = None, passed: bool | None = None,
                   gate_reason: str | None = None, one_time: dict | None = None,
                   size_bytes: int | None = None, notes: list[str] | None = None,
                   facts: dict | None = None) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (candidate, status, error, json.dumps(fidelity), passed, gate_reason,
             json.dumps(one_time), size_bytes, json.dumps(notes or []), time.time(),
             json.dumps(facts or {})),
        )

    def results(self) -> dict[str, Result]:
        out = {}
        for r in self.db.execute("SELECT * FROM results").fetchall():
            row = dict(r)
            for key in ("fidelity", "one_time", "notes", "facts"):
                row[key] = json.loads(row[key]) if row.get(key) else None
            if "facts" not in r.keys():  # a version 2 study, read as it is
                row["facts"] = _noted_facts(row["notes"] or [])
            row["passed"] = None if row["passed"] is None else bool(row["passed"])
            out[row["candidate"]] = row
        return out

    def put_trial(self, candidate: str, point: str, kind: str, status: str,
                  error: str | None = None, latency: dict | None = None,
                  throughput: float | None = None, items: int | None = None,
                  peak_mb: float | None = None, details: dict | None = None) -> None:
        """One trial's row: `point` is where it measured, `kind` what kind of trial it is
        (latency or corpus for inference; speed, probe or converge for training), `latency`
        its timing statistics, and `details` what else it recorded (a training run's loss
        curve, loss scales and memory figures)."""
        self.db.execute(
            "INSERT OR REPLACE INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (candidate, point, kind, status, error, json.dumps(latency), throughput, items,
             peak_mb, json.dumps(details), time.time()),
        )

    def trials(self, candidate: str | None = None, *, point: str | None = None,
               kind: str | None = None, status: str | None = None) -> list[Trial]:
        """The trial rows in the order they finished, only those matching each filter given
        (asked of the database, not scanned here)."""
        given = {k: v for k, v in (("candidate", candidate), ("point", point), ("kind", kind),
                                   ("status", status)) if v is not None}
        where = " AND ".join(f"{k} = ?" for k in given)
        rows = self.db.execute(f"SELECT * FROM trials {'WHERE ' + where if where else ''} "
                               "ORDER BY finished", tuple(given.values())).fetchall()
        return [{**dict(r), "latency": json.loads(r["latency"]) if r["latency"] else None,
                 "details": json.loads(r["details"]) if r["details"] else None} for r in rows]

    def done_points(self, candidate: str) -> set[str]:
        rows = self.db.execute("SELECT point FROM trials WHERE candidate = ?", (candidate,))
        return {r["point"] for r in rows}


# How a version 2 result noted the layers its accuracy-aware search kept in float, which
# version 3 keeps as the fact `float_layers`.
_KEPT_NOTE = re.compile(r"kept in float \((\d+) of (\d+) layers")


def _noted_facts(notes: list[str]) -> dict:
    """The facts a version 2 result held only in its notes."""
    kept = _KEPT_NOTE.search(" ".join(notes))
    return {"float_layers": [int(kept[1]), int(kept[2])]} if kept else {}


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a version 2 study to this version in one transaction: its results gain their
    facts, read once from the notes that held them."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if "facts" in _columns(db)["results"]:  # another process migrated it first
            db.execute("COMMIT")
            return
        db.execute("ALTER TABLE results ADD COLUMN facts TEXT")
        for name, notes in db.execute("SELECT candidate, notes FROM results").fetchall():
            db.execute("UPDATE results SET facts = ? WHERE candidate = ?",
                       (json.dumps(_noted_facts(json.loads(notes or "[]"))), name))
        db.execute("UPDATE meta SET value = ? WHERE key = ?",
                   (json.dumps(SCHEMA_VERSION), Meta.SCHEMA_VERSION.value))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _columns(db: sqlite3.Connection) -> dict[str, list[str]]:
    """Each table of a database with its column names, in order."""
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: [c[1] for c in db.execute(f"PRAGMA table_info('{t}')")] for t in tables}


@functools.cache
def _expected_columns() -> dict[str, list[str]]:
    """This version's tables and their columns: what a study database must match."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(SCHEMA)
        return _columns(db)
    finally:
        db.close()


def _open_readonly(path: Path) -> sqlite3.Connection:
    """The database opened for reading only: in place when its folder allows the shared
    memory a write-ahead log needs, else as an immutable file (a read-only folder)."""
    for mode in ("mode=ro", "immutable=1"):
        db = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, timeout=60,
                             isolation_level=None)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            db.close()
        except sqlite3.DatabaseError as exc:
            db.close()
            raise HastenError(f"{path} is not a SQLite database, or a damaged one ({exc}); "
                              "move it away, or start over with `fresh`.") from exc
    raise HastenError(f"{path} cannot be read; check that you may read its folder.")


def read_study(folder: Path) -> dict:
    """Everything a study folder's database holds (meta, candidates, results, trials), read in
    one go and closed again; a folder without a database is an error."""
    folder = Path(folder)
    if not (folder / "study.sqlite").is_file():
        raise HastenError(f"{folder} is not a hasten study folder (no study.sqlite).")
    store = Store(folder, readonly=True)
    try:
        meta = {r["key"]: json.loads(r["value"])
                for r in store.db.execute("SELECT key, value FROM meta")}
        return {"meta": meta, "candidates": store.candidates(), "results": store.results(),
                "trials": store.trials()}
    finally:
        store.close()

"""The study's artifact cache: each file-writing chain prefix is built once, in a build
process apart from the trials that measure it, and shared by every candidate that starts with
it. One build process builds every prefix still missing, one after the other, so the study
pays for one process start, not one per prefix. A prefix that fails (an exception, a crash, a
time limit) is recorded once, and every candidate that needs it fails at once with the same
reason instead of building it again."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from pathlib import Path

from hasten.engine import Engine
from hasten.executors import Ran, ended, past_limit
from hasten.infer import passes
from hasten.infer.passes import Artifact
from hasten.store import Meta, Store

NOTES_FILE = "notes.txt"  # beside each file artifact: what its passes noted
COST_FILE = "cost.json"  # beside each file artifact: how long its pass took
FACTS_FILE = "facts.json"  # beside each file artifact: what its passes established (facts)
PARTIAL = ".partial-"  # a step's folder name + this + the pid: where its pass writes until done
BUILDING = ".building"  # in a step's folder while the step runs; a crash or a kill leaves it


def folder(study: Path, chain: tuple[str, ...]) -> Path:
    """Where the artifact of this chain lives."""
    return study / "artifacts" / passes.slug(chain)


def cached(study: Path, chain: tuple[str, ...]) -> tuple[int, Artifact | None, dict]:
    """The longest prefix of the chain whose file artifact is on disk, whole: its length, the
    artifact, and the one-time cost of every step in it. A step's folder holds its cost file
    only once the step finished (it is renamed into place whole), so a build that was killed
    is built again, never reused."""
    for i in range(len(chain), 0, -1):
        step = passes.REGISTRY[chain[i - 1]]
        where = folder(study, chain[:i])
        if (step.output_file and (where / step.output_file).is_file()
                and (where / COST_FILE).is_file()):
            notes_file = where / NOTES_FILE
            notes = notes_file.read_text().splitlines() if notes_file.is_file() else []
            facts_file = where / FACTS_FILE
            facts = json.loads(facts_file.read_text()) if facts_file.is_file() else {}
            costs = {}
            for j in range(i):
                cost = folder(study, chain[: j + 1]) / COST_FILE
                if cost.is_file():
                    costs[f"{chain[j]}_s"] = json.loads(cost.read_text())["seconds"]
            return i, Artifact(step.produces, path=where / step.output_file, notes=notes,
                               facts=facts), costs
    return 0, None, {}


def started(where: Path, writes_file: bool) -> Path:
    """Mark a step as under way in its folder; return the folder its pass writes to: for a
    file artifact, a partial folder beside it that `finished` renames into place."""
    where.mkdir(parents=True, exist_ok=True)
    (where / BUILDING).touch()
    if not writes_file:
        return where
    partial = where.with_name(f"{where.name}{PARTIAL}{os.getpid()}")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    return partial


def finished(where: Path, writing: Path, artifact: Artifact, seconds: float) -> Artifact:
    """Mark a step as done. A file artifact gets its notes, facts and cost beside it, then its
    partial folder replaces the step's folder in one rename; returns the artifact at its
    final place."""
    if writing == where:
        (where / BUILDING).unlink(missing_ok=True)
        return artifact
    (writing / NOTES_FILE).write_text("\n".join(artifact.notes))
    (writing / FACTS_FILE).write_text(json.dumps(artifact.facts))
    (writing / COST_FILE).write_text(json.dumps({"seconds": seconds}))
    shutil.rmtree(where)
    os.rename(writing, where)
    if artifact.path is not None and artifact.path.parent == writing:
        artifact.path = where / artifact.path.name
    return artifact


def remove_partial(study: Path) -> None:
    """Delete the partial folders of builds that were killed before they finished."""
    for partial in (study / "artifacts").glob(f"*{PARTIAL}*"):
        shutil.rmtree(partial, ignore_errors=True)


def unfinished_step(study: Path, chain: tuple[str, ...]) -> tuple[str, ...] | None:
    """The longest prefix of the chain whose last step started and never finished."""
    for i in range(len(chain), 0, -1):
        if (folder(study, chain[:i]) / BUILDING).exists():
            return chain[:i]
    return None


def record_build_failure(store: Store, prefix: tuple[str, ...], reason: str) -> None:
    """Remember that building this prefix failed, and why."""
    (folder(store.folder, prefix) / BUILDING).unlink(missing_ok=True)
    failed = store.meta(Meta.FAILED_BUILDS, {})
    store.set_meta(Meta.FAILED_BUILDS, {**failed, passes.slug(prefix): reason})


def failure(store: Store, chain: tuple[str, ...]) -> str | None:
    """Why a candidate with this chain cannot be built: a prefix of it failed before."""
    failed = store.meta(Meta.FAILED_BUILDS, {})
    for i in range(1, len(chain) + 1):
        reason = failed.get(passes.slug(chain[:i]))
        if reason:
            return f"{' then '.join(chain[:i])} failed: {reason}"
    return None


def missing(store: Store, chain: tuple[str, ...]) -> tuple[str, ...] | None:
    """The chain's file prefix when it still has to be built (not on disk, not failed)."""
    prefix = passes.file_prefix(chain)
    if (not prefix or failure(store, chain)
            or cached(store.folder, prefix)[0] == len(prefix)):
        return None
    return prefix


def ensure_built(engine: Engine, name: str, chain: tuple[str, ...],
                 later: dict[str, tuple[str, ...]], cap_s: float = math.inf) -> Ran:
    """Build the chain's file prefix unless it is on disk, in one build process with the
    missing prefixes of the candidates screened `later` (name -> chain); the outcome carries
    why this candidate cannot be built (this time or an earlier one). A build stopped at
    `cap_s` (what a time budget leaves) is cut and records no failure: the budget, not the
    chain, stopped it."""
    store = engine.store
    prefix = missing(store, chain)
    if prefix is None:
        return Ran(failure(store, chain))
    todo = {prefix: name}
    for other, other_chain in later.items():
        other_prefix = missing(store, other_chain)
        if other_prefix is not None:
            todo.setdefault(other_prefix, other)
    remove_partial(store.folder)  # no build runs now: partial folders are a killed build's
    for p in todo:  # markers a killed build left behind are stale
        for i in range(1, len(p) + 1):
            (folder(store.folder, p[:i]) / BUILDING).unlink(missing_ok=True)
    limit = engine.limits.of("screen")

    def step_too_long() -> str | None:
        """Each step of the build has the limit of one trial."""
        for p in todo:
            for i in range(1, len(p) + 1):
                marker = folder(store.folder, p[:i]) / BUILDING
                with contextlib.suppress(FileNotFoundError):
                    if time.time() - marker.stat().st_mtime > limit:
                        return past_limit(limit)
        return None

    why = engine.executor.run(store.folder, name, "build", list(todo.values()),
                              min(limit * len(todo), cap_s), watch=step_too_long)
    ran = ended(why, limit * len(todo), cap_s)
    if ran.cut:
        return ran
    if why:  # a crash or the time limit: the step under way is the one that failed
        step = next(filter(None, (unfinished_step(store.folder, p) for p in todo)), prefix)
        record_build_failure(store, step, why)
    if failure(store, chain) is None and cached(store.folder, prefix)[0] < len(prefix):
        record_build_failure(store, unfinished_step(store.folder, prefix) or prefix,
                       why or "it wrote no artifact")
    return Ran(failure(store, chain))

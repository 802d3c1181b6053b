"""The study's artifact cache: each file-writing chain prefix is built once, in a process of
its own, and shared by every candidate that starts with it. A prefix that fails (an exception,
a crash, a time limit) is recorded once, and every candidate that needs it fails at once with
the same reason instead of building it again."""

from __future__ import annotations

import json
from pathlib import Path

from hasten import passes
from hasten.executors import LocalExecutor, TimeLimits, timed_run
from hasten.passes import Artifact
from hasten.store import Store

NOTES_FILE = "notes.txt"  # beside each file artifact: what its passes noted
COST_FILE = "cost.json"  # beside each file artifact: how long its pass took
BUILDING = ".building"  # in a step's folder while the step runs; a crash or a kill leaves it
FAILED = "failed_builds"  # the store's meta key: {prefix slug: why it failed}


def folder(study: Path, chain: tuple[str, ...]) -> Path:
    """Where the artifact of this chain lives."""
    return study / "artifacts" / passes.slug(chain)


def cached(study: Path, chain: tuple[str, ...]) -> tuple[int, Artifact | None, dict]:
    """The longest prefix of the chain whose file artifact is on disk: its length, the
    artifact, and the one-time cost of every step in it."""
    for i in range(len(chain), 0, -1):
        step = passes.REGISTRY[chain[i - 1]]
        where = folder(study, chain[:i])
        if step.output_file and (where / step.output_file).is_file():
            notes_file = where / NOTES_FILE
            notes = notes_file.read_text().splitlines() if notes_file.is_file() else []
            costs = {}
            for j in range(i):
                cost = folder(study, chain[: j + 1]) / COST_FILE
                if cost.is_file():
                    costs[f"{chain[j]}_s"] = json.loads(cost.read_text())["seconds"]
            return i, Artifact(step.produces, path=where / step.output_file, notes=notes), costs
    return 0, None, {}


def started(where: Path) -> None:
    """Mark a step as under way in its folder."""
    where.mkdir(parents=True, exist_ok=True)
    (where / BUILDING).touch()


def finished(where: Path, artifact: Artifact, seconds: float, writes_file: bool) -> None:
    """Mark a step as done; a file artifact keeps its notes and cost beside it."""
    if writes_file:
        (where / NOTES_FILE).write_text("\n".join(artifact.notes))
        (where / COST_FILE).write_text(json.dumps({"seconds": seconds}))
    (where / BUILDING).unlink(missing_ok=True)


def unfinished_step(study: Path, chain: tuple[str, ...]) -> tuple[str, ...] | None:
    """The longest prefix of the chain whose last step started and never finished."""
    for i in range(len(chain), 0, -1):
        if (folder(study, chain[:i]) / BUILDING).exists():
            return chain[:i]
    return None


def record_failure(store: Store, prefix: tuple[str, ...], reason: str) -> None:
    """Remember that building this prefix failed, and why."""
    (folder(store.folder, prefix) / BUILDING).unlink(missing_ok=True)
    store.set_meta(FAILED, {**store.meta(FAILED, {}), passes.slug(prefix): reason})


def failure(store: Store, chain: tuple[str, ...]) -> str | None:
    """Why a candidate with this chain cannot be built: a prefix of it failed before."""
    failed = store.meta(FAILED, {})
    for i in range(1, len(chain) + 1):
        reason = failed.get(passes.slug(chain[:i]))
        if reason:
            return f"{' then '.join(chain[:i])} failed: {reason}"
    return None


def ensure_built(store: Store, executor: LocalExecutor, limits: TimeLimits, name: str,
                 chain: tuple[str, ...]) -> str | None:
    """Build the chain's file prefix in its own process unless it is on disk; return why the
    candidate cannot be built (this time or an earlier one), or None."""
    reason = failure(store, chain)
    prefix = passes.file_prefix(chain)
    if reason or not prefix or cached(store.folder, prefix)[0] == len(prefix):
        return reason
    why = timed_run(executor, limits, False, store.folder, name, "build", [],
                    limit_phase="screen")
    reason = failure(store, chain)  # the build process records its own exceptions
    if reason is None and (why or cached(store.folder, prefix)[0] < len(prefix)):
        step = unfinished_step(store.folder, prefix) or prefix
        record_failure(store, step, why or "it wrote no artifact")
        reason = failure(store, chain)
    return reason

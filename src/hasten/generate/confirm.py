"""Interleaved confirmation of a generation study, run in a child process: the baseline and
the leaders are timed again in alternating rounds, each in a worker process of its own, as the
inference study's are (hasten.rounds). A worker's
call is one pair of generations from the point's prompts, one token and all the new tokens;
it answers with the median time per output token, which the ranking then uses.

Run as `python -m hasten.generate.confirm STUDY_DIR confirm confirm POINTS`; a worker is the
same module with the phase `worker` and the candidate's name.
"""

from __future__ import annotations

import time
from pathlib import Path

from hasten import rounds
from hasten.engine import Engine, Progress
from hasten.generate.settings import GenerateSettings
from hasten.generate.trial import build, per_token
from hasten.generate.workload import Tokens
from hasten.store import Meta, Store

MODULE = "hasten.generate.confirm"
# The leaders confirmed at each point, besides the baseline.
LEADERS = 2
# Pairs of generations per block: a whole generation is long enough to time alone, and on the
# demo decoder three pairs per block made the confirmation overrun the budget's last 15%.
CALLS = 1


def plan(study) -> dict[str, list[str]]:
    """Per confirmed point (batch 1 at the shortest prompt, and the largest batch there), the
    baseline and the passing candidates with the fastest decode."""
    out = {}
    for point in dict.fromkeys((study.objective_point("latency"),
                                study.objective_point("throughput"))):
        ranked = sorted((r for r in study.table() if r["status"] == "ok" and r["passed"]
                         and point in r["points"]), key=lambda r: r["points"][point]["tpot"])
        names = [r["candidate"] for r in ranked]
        leaders = [n for n in names if n != study.baseline][:LEADERS]
        if leaders and study.baseline in names:
            out[point] = [study.baseline, *leaders]
    return out


def confirm(engine: Engine, progress: Progress) -> None:
    """Confirm the leaders of a finished run (once per plan: a resumed study keeps them)."""
    from hasten.generate.study import GenerateStudy

    store = engine.store
    store.settle()
    wanted = plan(GenerateStudy(store.folder))
    done = store.meta(Meta.CONFIRMATION) or {}
    if not wanted or (done.get("plan") == wanted and set(done.get("results", {})) >= set(wanted)):
        return
    store.set_meta(Meta.CONFIRMATION, {"plan": wanted})
    progress("confirming the leaders in alternating rounds", 0, 1)
    reason = engine.executor.run(store.folder, "confirm", "confirm", list(wanted),
                                 engine.limits.of("full"), module=MODULE)
    results = (store.meta(Meta.CONFIRMATION) or {}).get("results", {})
    for point in wanted:
        outcome = results.setdefault(
            point, {"error": reason or "the confirmation process wrote no result"})
        if "error" in outcome:
            engine.log(f"confirmation at {point} failed: {outcome['error']}")
            continue
        for name, c in outcome["candidates"].items():
            engine.log(f"{name}  {point}  confirmed {c['speedup']:.2f}x "
                       f"({c['speedup_low']:.2f}-{c['speedup_high']:.2f}) in {c['rounds']} "
                       "rounds")
    store.set_meta(Meta.CONFIRMATION, {"plan": wanted, "results": results})


def run(study: Path, points: list[str]) -> None:
    """Confirm each point's forms in alternating rounds (see hasten.rounds.run)."""
    store = Store(study, readonly=True)
    baseline = GenerateSettings.from_dict(store.meta(Meta.CONFIG)).baseline
    store.close()
    rounds.run(study, points, baseline, MODULE, calls=CALLS)


def worker(study: Path, name: str, points: list[str]) -> None:
    """One form in this process, built as its trial builds it and warmed at each point; each
    request `POINT N` is answered with the median time per output token (s) of N pairs of
    generations there."""
    reply = rounds.replies()
    store = Store(study, readonly=True)
    settings = GenerateSettings.from_dict(store.meta(Meta.CONFIG))
    row = next(c for c in store.candidates() if c["name"] == name)
    tokens = Tokens(study, settings.workload.data.get("tokens_sha256"))
    generator = build(study, settings, row, tokens)
    store.close()
    new = settings.workload.new_tokens
    prompts = {point: tokens.prompts(point) for point in points}
    for ids in prompts.values():
        generator.generate(ids, 1)
        generator.generate(ids, new)

    def pair(point: str) -> float:
        """One pair of generations: the time per output token after the first (s)."""
        t0 = time.perf_counter()
        generator.generate(prompts[point], 1)
        t1 = time.perf_counter()
        generator.generate(prompts[point], new)
        return per_token(t1 - t0, time.perf_counter() - t1, new)

    rounds.serve(reply, pair)


def main() -> None:
    rounds.main(run, worker)


if __name__ == "__main__":
    main()

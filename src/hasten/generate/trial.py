"""One generation candidate's trials, run in a child process: build it, check its fidelity
against the baseline (in its first phase), and time each point, writing each row to the store
as it finishes.

At a point (batch x prompt length), each round times a one-token generation (the prefill:
time to first token) and a generation of all the new tokens from the same prompts; the time
per output token is their difference over the tokens after the first. Rounds alternate the
two, so that a drift of the machine's speed falls on both alike.

Run as `python -m hasten.generate.trial STUDY_DIR CANDIDATE PHASE POINTS`.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

import torch

from hasten.engine import record_failure
from hasten.errors import HastenError, describe_error
from hasten.generate import backends, fidelity
from hasten.generate.backends import BuildContext, Generator
from hasten.generate.decoder import Decoder
from hasten.generate.settings import GenerateSettings
from hasten.generate.workload import Tokens
from hasten.measure import MemoryWatch, stats
from hasten.store import Meta, Store

KIND = "generate"
MIN_ROUNDS, MAX_ROUNDS = 3, 30
MIN_TOKEN_S = 1e-7  # the floor of a time per token (s): far under any decoder's
ARTIFACTS = "artifacts/generate"


def build(study: Path, settings: GenerateSettings, row: dict, tokens: Tokens) -> Generator:
    """The candidate's generator, built from the study's decoder and the row's settings."""
    candidate = backends.find(row["name"])
    if candidate is None:
        raise HastenError(f"{row['name']} is not a candidate this hasten offers; update hasten "
                          "or start the study again with --fresh.")
    work = study / ARTIFACTS
    work.mkdir(parents=True, exist_ok=True)
    calibration = [tokens.prompts(f"b1/p{p}") for p in settings.workload.prompt_lengths]
    return candidate.build(BuildContext(Decoder.from_dict(settings.model), work,
                                        row["settings"],
                                        backends.threads_of(row["settings"], settings.threads),
                                        calibration))


def time_point(generator: Generator, prompts: torch.Tensor, new_tokens: int,
               seconds: float) -> dict:
    """Alternating rounds of a one-token and a whole generation after one warm-up of each:
    at least MIN_ROUNDS, then until `seconds` have passed (at most MAX_ROUNDS)."""
    generator.generate(prompts, 1)
    generator.generate(prompts, new_tokens)
    first, whole = [], []
    started = time.perf_counter()
    while len(whole) < MIN_ROUNDS or (time.perf_counter() - started < seconds
                                      and len(whole) < MAX_ROUNDS):
        t0 = time.perf_counter()
        generator.generate(prompts, 1)
        t1 = time.perf_counter()
        generator.generate(prompts, new_tokens)
        t2 = time.perf_counter()
        first.append(t1 - t0)
        whole.append(t2 - t1)
    tokens = [per_token(f, w, new_tokens) for f, w in zip(first, whole, strict=True)]
    batch = prompts.shape[0]
    tpot, total = stats(tokens), stats(whole)
    return {"tpot": tpot, "ttft": stats(first), "total": total,
            "decode_tokens_per_s": batch * 1000 / tpot["p50"] if tpot["p50"] else None,
            "tokens_per_s": batch * new_tokens * 1000 / total["p50"]}


def per_token(first_s: float, whole_s: float, new_tokens: int) -> float:
    """The time per output token after the first (s): the whole generation's time less the
    one-token generation's, over the tokens after the first. Never zero, which no ratio could
    divide by: with few new tokens the two times can come out equal."""
    return max(whole_s - first_s, MIN_TOKEN_S) / max(new_tokens - 1, 1)


def check_fidelity(store: Store, study: Path, settings: GenerateSettings, name: str,
                   generator: Generator, tokens: Tokens, one_time: dict) -> None:
    """The baseline keeps its outputs as the reference; every candidate (the baseline too) is
    compared with them and gated."""
    windows, prompts = tokens.eval(), tokens.continuations()
    t0 = time.perf_counter()
    logits = torch.cat([generator.logits(windows[i: i + 4]) for i in range(0, len(windows), 4)])
    continuations = generator.generate(prompts, settings.workload.new_tokens)
    one_time["fidelity_s"] = time.perf_counter() - t0
    path = study / fidelity.REFERENCE_FILE
    if name == settings.baseline:
        fidelity.save(path, fidelity.reference(logits, windows, continuations))
    metrics = fidelity.compare(fidelity.load(path), logits, windows, continuations)
    passed, reason = fidelity.gate(metrics, settings.max_drop)
    store.put_result(name, "ok", fidelity=metrics, passed=passed, gate_reason=reason,
                     one_time=one_time, size_bytes=generator.size_bytes(),
                     notes=generator.notes)


def run(study: Path, name: str, phase: str, points: list[str]) -> None:
    store = Store(study)
    settings = GenerateSettings.from_dict(store.meta(Meta.CONFIG))
    row = next(c for c in store.candidates() if c["name"] == name)
    memory = MemoryWatch()
    one_time: dict = {}
    try:
        tokens = Tokens(study, settings.workload.data.get("tokens_sha256"))
        t0 = time.perf_counter()
        generator = build(study, settings, row, tokens)
        one_time["build_s"] = time.perf_counter() - t0
        if phase == "screen":
            check_fidelity(store, study, settings, name, generator, tokens, one_time)
    except Exception as exc:
        record_failure(store, name, {p: KIND for p in points}, describe_error(exc),
                       first=phase == "screen", one_time=one_time)
        traceback.print_exc()
        return
    for point in points:
        try:
            memory.restart()
            timed = time_point(generator, tokens.prompts(point), settings.workload.new_tokens,
                               settings.point_s)
            latency = {**timed.pop("tpot"), "load_avg": os.getloadavg()[0]}
            store.put_trial(name, point, KIND, "ok", latency=latency,
                            throughput=timed["decode_tokens_per_s"],
                            items=int(tokens.prompts(point).shape[0]),
                            peak_mb=memory.held_mb(), details=timed)
        except Exception as exc:
            record_failure(store, name, {point: KIND}, describe_error(exc))
            traceback.print_exc()


def main() -> None:
    study, name, phase, points = sys.argv[1:5]
    run(Path(study), name, phase, [p for p in points.split(",") if p])


if __name__ == "__main__":
    main()

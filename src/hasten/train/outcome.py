"""What a training trial measures and how it is judged, shared by the PyTorch and the Keras
trial processes (hasten.train.runner, hasten.train.keras.runner): the step counts, the final
loss and its spread, the gate against fp32's own runs, the kind of each phase. No framework is
imported here."""

from __future__ import annotations

import math
import statistics

WARMUP_STEPS = 3
MIN_TIMED_STEPS = 5  # a speed run always times at least this many steps, however slow
# A candidate whose warm step (after the first) took this many times fp32's median step, and
# more than SLOW_STEP_S, cannot win on time (a CPU that only emulates its half type) and would
# spend minutes being timed: its warm-up ends there and its speed run times SLOW_STEPS steps.
TOO_SLOW = 4.0
SLOW_STEP_S = 1.0
SLOW_STEPS = 2
PROBE_STEPS = 2
NAN_PATIENCE = 5  # non-finite losses in a row that end a run with a loss scaler
# A precision mode too slow to win (TOO_SLOW) is not trained to the end when that would take
# longer than this.
SLOW_CONVERGE_S = 60.0
# fp32 trains with this many seeds (initialisation and data order), and so does a candidate
# that would be recommended: one run's metric is one draw from a spread that can be wide (a
# small ViT on digits after 60 steps: fp32 at 0.27, 0.36 and 0.42 accuracy with three seeds).
SEEDS = 3


def too_slow_to_train(speed: float, base: float, samples: int) -> bool:
    """Whether a precision mode that ran at `speed` samples/s, against the baseline's `base`,
    is too slow to win and to train for `samples` samples (hasten.train.run._too_slow)."""
    return speed * TOO_SLOW < base and samples / speed > SLOW_CONVERGE_S


def phase_kind(phase: str) -> str:
    """The kind of trial a phase is, stored with its row: speed, probe (speed at a batch size
    of the batch-size search) or converge (with any seed)."""
    if phase.startswith("probe-b"):
        return "probe"
    return "converge" if phase.startswith("converge") else phase


def seed_point(k: int) -> str:
    """The convergence run with the study's seed plus k: `converge`, `converge-s1`, ..."""
    return "converge" if k == 0 else f"converge-s{k}"


def seed_of(point: str) -> int:
    """What a convergence run's point adds to the study's seed."""
    return int(point.rsplit("-s", 1)[1]) if point.startswith("converge-s") else 0


def summary(outcome: dict) -> dict:
    """What the gate needs of one convergence run, kept with its trial row."""
    return {k: outcome.get(k) for k in ("final_loss", "final_loss_spread", "eval", "diverged",
                                        "steps")}


def _tail(losses: list[float]) -> list[float]:
    return losses[-max(1, len(losses) // 10):]


def final_loss(losses: list[float]) -> float:
    """The mean loss over the last tenth of the steps (at least one): less noisy than the last."""
    return statistics.fmean(_tail(losses))


def tail_spread(losses: list[float]) -> float:
    """The standard deviation of the losses over the last tenth of the steps: how much the loss
    moves from batch to batch there, the noise a final-loss comparison has to allow."""
    tail = _tail(losses)
    finite = [x for x in tail if math.isfinite(x)]
    return statistics.stdev(finite) if len(finite) > 1 else 0.0


def _lower_better(key: str) -> bool:
    return any(w in key.lower() for w in ("loss", "error", "perplexity", "mse", "mae"))


def judged_metric(runs: list[dict], fp32: list[dict]) -> tuple[str, list[float], list[float],
                                                                float]:
    """The figure runs are judged by: fp32's first eval metric when every run has it, else the
    final loss; with its values in the candidate's runs and in fp32's, and the slack a loss
    comparison allows (fp32's batch-to-batch spread at the end of training)."""
    evals = fp32[0].get("eval")
    if evals and all(r.get("eval") for r in runs):
        key = next(iter(evals))
        return (key, [r["eval"].get(key, math.nan) for r in runs],
                [r["eval"][key] for r in fp32], 0.0)
    return ("final loss", [r["final_loss"] for r in runs], [r["final_loss"] for r in fp32],
            max(r.get("final_loss_spread") or 0.0 for r in fp32))


def gate(runs: list[dict], fp32: list[dict], max_drop: float) -> tuple[str, str]:
    """Judge a candidate's convergence runs (their mean) against fp32's own runs: "pass" when
    no worse than fp32's worst run by more than max_drop (relative; for a loss without an
    eval, or fp32's batch-to-batch spread if larger), "fail" when worse than that by more than
    the span of fp32's runs as well, else "cannot tell" (fp32's own runs span too much at this
    length to tell); with the reason in words."""
    for r in runs:
        if r.get("diverged"):
            return "fail", f"diverged: {r['diverged']}"
        if not math.isfinite(r["final_loss"]):
            return "fail", "diverged: the final loss is not finite"
    key, mine, theirs, slack = judged_metric(runs, fp32)
    value, ref = statistics.fmean(mine), statistics.fmean(theirs)
    if not math.isfinite(value):
        return "fail", f"{key} {value:.4g} against fp32's {ref:.4g}"
    sign = -1.0 if _lower_better(key) else 1.0
    worst, best = min(sign * v for v in theirs), max(sign * v for v in theirs)
    span = best - worst
    allowed = max(max_drop * abs(ref), slack)
    ours = f"{key} {value:.4g}" + (f" (mean of {len(mine)} runs)" if len(mine) > 1 else "")
    if len(theirs) == 1:
        fp32_text = f"fp32's {ref:.4g}"
    else:
        low, high = sorted((sign * worst, sign * best))
        fp32_text = f"fp32's {len(theirs)} runs {low:.4g}-{high:.4g}"
    if sign * value >= worst - allowed:
        if len(theirs) == 1 and len(mine) == 1:
            return "pass", f"{ours} (fp32 {ref:.4g})"
        return "pass", f"{ours}, within {fp32_text}"
    if sign * value < worst - allowed - span:
        if key == "final loss" and len(theirs) == 1:
            return "fail", f"{ours} against {fp32_text} (allowed {allowed:.2g} more)"
        return "fail", f"{ours} against {fp32_text}"
    steps = runs[0].get("steps")
    after = f" after {steps} steps" if steps else ""
    return "cannot tell", (f"cannot tell{after}: {ours} against {fp32_text}, which differ "
                           "by more than that among themselves; train longer")


def metric_range(runs: list[dict], fp32: list[dict]) -> dict | None:
    """The judged figure over a candidate's runs, for the reports: its name, mean, lowest and
    highest, and the number of runs; None without runs."""
    if not runs or not fp32:
        return None
    key, values, _, _ = judged_metric(runs, fp32)
    return {"metric": key, "mean": statistics.fmean(values), "low": min(values),
            "high": max(values), "runs": len(values)}


def runs_of(store, name: str) -> list[dict]:
    """A candidate's convergence runs (one per seed), as summaries, in seed order."""
    trials = sorted(store.trials(name, kind="converge", status="ok"),
                    key=lambda t: seed_of(t["point"]))
    out = []
    for t in trials:
        found = (t["details"] or {}).get("outcome")
        if found is None and t["point"] == "converge":  # a study from before seeds
            found = (store.results().get(name) or {}).get("fidelity")
        if found:
            out.append(summary(found))
    return out


def judge(store, name: str, baseline: str, max_drop: float,
          outcome: dict | None = None) -> None:
    """Judge a candidate on all its convergence runs against all of fp32's, and write the
    verdict with its result (`outcome`: the full record of its first run, when it is new)."""
    previous = store.results().get(name) or {}
    fidelity = outcome or previous.get("fidelity")
    runs = runs_of(store, name)
    if not fidelity or not runs:
        return
    fp32 = runs_of(store, baseline) or runs
    verdict, reason = gate(runs, fp32, max_drop)
    fidelity = {**fidelity, "verdict": verdict, "runs": runs}
    store.put_result(name, "ok", fidelity=fidelity, passed=verdict == "pass",
                     gate_reason=reason, one_time=previous.get("one_time"),
                     notes=previous.get("notes"))


def judged_text(row: dict, key: str, digits: int) -> str | None:
    """A report's cell for the judged figure `key` of a table row: the mean over the
    candidate's runs with their range when it has several, None when `key` is not what was
    judged or there was one run."""
    found = row.get("metric")
    if not found or found["metric"] != key or found["runs"] < 2:
        return None
    return (f"{found['mean']:.{digits}f} ({found['runs']} runs {found['low']:.{digits}f}"
            f"-{found['high']:.{digits}f})")


def noise_text(noise: dict) -> str:
    """fp32's run-to-run spread in words, the bar a recommendation must clear."""
    return (f"fp32's run-to-run spread over its {noise['runs']} runs: {noise['speed']:.0%} in "
            f"samples/s and {noise['memory_mb']:.0f} MiB in peak memory; a candidate is "
            "recommended only when it beats fp32 by more")

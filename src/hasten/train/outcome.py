"""What a training trial measures and how it is judged, shared by the PyTorch and the Keras
trial processes (hasten.train.runner, hasten.train.keras.runner): the step counts, the final
loss and its spread, the gate against the baseline, the kind of each phase. No framework is
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


def too_slow_to_train(speed: float, base: float, samples: int) -> bool:
    """Whether a precision mode that ran at `speed` samples/s, against the baseline's `base`,
    is too slow to win and to train for `samples` samples (hasten.train.run._too_slow)."""
    return speed * TOO_SLOW < base and samples / speed > SLOW_CONVERGE_S


def phase_kind(phase: str) -> str:
    """The kind of trial a phase is, stored with its row: speed, probe (speed at a batch size
    of the batch-size search) or converge."""
    return "probe" if phase.startswith("probe-b") else phase


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


def gate(outcome: dict, baseline: dict, max_drop: float) -> tuple[bool, str]:
    """Whether a converged candidate keeps fp32's quality: its first eval metric within
    max_drop (relative) of fp32's, or without an eval, its final loss no worse than fp32's by
    more than max_drop (relative) or fp32's own batch-to-batch spread, whichever is larger."""
    if outcome["diverged"]:
        return False, f"diverged: {outcome['diverged']}"
    if not math.isfinite(outcome["final_loss"]):
        return False, "diverged: the final loss is not finite"
    mine, theirs = outcome.get("eval"), baseline.get("eval")
    if mine and theirs:
        key = next(iter(theirs))
        value, ref = mine.get(key, float("nan")), theirs[key]
        lower_better = any(w in key.lower() for w in ("loss", "error", "perplexity", "mse", "mae"))
        worse = (value - ref) if lower_better else (ref - value)
        if not math.isfinite(value) or worse > max_drop * abs(ref):
            return False, f"{key} {value:.4g} against fp32's {ref:.4g}"
        return True, f"{key} {value:.4g} (fp32 {ref:.4g})"
    ref = baseline["final_loss"]
    allowed = max(max_drop * abs(ref), baseline.get("final_loss_spread", 0.0))
    if outcome["final_loss"] - ref > allowed:
        return False, (f"final loss {outcome['final_loss']:.4g} against fp32's {ref:.4g} "
                       f"(allowed {allowed:.2g} more)")
    return True, f"final loss {outcome['final_loss']:.4g} (fp32 {ref:.4g})"

"""One Keras candidate in a child process: set the study's backend, build the recipe's model
under the candidate's dtype policy from the study's initial weights, compile it as the
candidate says, and time its steps or train it for the study's steps through `model.fit`.
The rows it writes are a PyTorch trial's (hasten.train.runner): the same kinds, the same
details (loss curve, loss scales, skipped steps, memory), the same gate.

Run as `python -m hasten.train.keras.runner STUDY_DIR CANDIDATE PHASE`, PHASE being `speed`,
`converge` or `probe-bN`. A candidate the study trains to the end in any case is trained in
its speed run's process (see `trains_on`).
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from hasten.engine import record_failure
from hasten.errors import describe_error
from hasten.measure import MemoryWatch, stats
from hasten.store import Meta, Store
from hasten.train.keras.candidates import HALF_MODES, KerasCandidate
from hasten.train.keras.recipe import KerasRecipe, load_keras_recipe
from hasten.train.outcome import (
    MIN_TIMED_STEPS,
    NAN_PATIENCE,
    PROBE_STEPS,
    SLOW_STEP_S,
    SLOW_STEPS,
    TOO_SLOW,
    WARMUP_STEPS,
    final_loss,
    judge,
    phase_kind,
    summary,
    tail_spread,
    too_slow_to_train,
)
from hasten.train.settings import TrainSettings

# The weights every candidate starts from, saved once by the study (hasten.train.run).
WEIGHTS = "initial.weights.h5"
MAX_TIMED_STEPS = 50


def start_keras(backend: str, threads: int) -> Any:
    """Import Keras on the study's backend with the study's threads (before any op runs)."""
    os.environ["KERAS_BACKEND"] = backend
    import keras

    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    else:
        import torch

        torch.set_num_threads(threads)
    return keras


def ordered(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> tuple:
    """The samples in one fixed shuffled order, cut to whole batches: every candidate trains on
    the same batches in the same order (fit then runs with shuffle=False)."""
    order = np.random.default_rng(seed).permutation(len(x))
    keep = len(x) // batch_size * batch_size
    if keep == 0:
        raise ValueError(f"train_data() holds {len(x)} samples, fewer than one batch of "
                         f"{batch_size}; lower the batch size")
    return x[order[:keep]], y[order[:keep]]


def build(keras: Any, recipe: KerasRecipe, c: KerasCandidate, weights: Path,
          example: np.ndarray) -> Any:
    """The recipe's model under the candidate's policy, from the initial weights, compiled."""
    keras.mixed_precision.set_global_policy(c.precision)
    model = recipe.build_model()
    if not model.built:
        model(example)
    model.load_weights(weights)
    if c.float32_output:
        outputs = keras.layers.Activation("linear", dtype="float32")(model.outputs[0])
        model = keras.Model(model.inputs, outputs)
    model.compile(optimizer=recipe.optimizer(), loss=recipe.loss(), metrics=recipe.metrics(),
                  jit_compile=c.jit_compile, steps_per_execution=c.steps_per_execution,
                  auto_scale_loss=c.loss_scale)
    return model


class Steps:
    """A Keras callback's state: the time, loss and loss scale of every execution of the train
    function (one step, or `steps_per_execution` of them), and when to stop."""

    def __init__(self, keras: Any, per_call: int, want: Any):
        self.keras, self.per_call, self.want = keras, per_call, want
        self.times: list[float] = []
        self.losses: list[float] = []
        self.scales: list[float] = []
        self.skipped = 0
        self.nan_step: int | None = None
        self.memory = MemoryWatch()
        self.last = 0.0

    def callback(self) -> Any:
        steps = self

        class _Callback(self.keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                steps.last = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                steps.record(self.model, logs or {})
                if steps.want(steps):
                    self.model.stop_training = True
                steps.last = time.perf_counter()

        return _Callback()

    def record(self, model: Any, logs: dict) -> None:
        self.times.append((time.perf_counter() - self.last) / self.per_call)
        loss = float(logs.get("loss", math.nan))
        # The logged loss is a running mean over the epoch: reset it, so each is this call's.
        model.reset_metrics()
        self.losses.append(loss)
        if not math.isfinite(loss) and self.nan_step is None:
            self.nan_step = len(self.losses)
        scale = getattr(model.optimizer, "dynamic_scale", None)
        if scale is not None:
            value = float(self.keras.ops.convert_to_numpy(scale))
            self.skipped += bool(self.scales) and value < self.scales[-1]
            self.scales.append(value)

    def diverged(self) -> str | None:
        """Why training cannot go on: a non-finite loss (for long, under a loss scale)."""
        if self.nan_step is None:
            return None
        recent = self.losses[-NAN_PATIENCE:]
        if self.scales and (len(recent) < NAN_PATIENCE or any(map(math.isfinite, recent))):
            return None
        return f"the loss went {self.losses[self.nan_step - 1]} at step {self.nan_step}"

    def curve(self) -> dict:
        return {"losses": self.losses, "scales": self.scales, "skipped_steps": self.skipped}

    def memory_figures(self) -> dict:
        """The candidate's own memory, hasten's one definition (see measure.MemoryWatch)."""
        return {"train_mb": self.memory.held_mb(), "peak_rss_mb": self.memory.peak_mb()}


def fit(model: Any, x: np.ndarray, y: np.ndarray, batch_size: int, steps: Steps,
        most: int) -> None:
    """Run fit over the fixed order until `steps.want` stops it or `most` calls ran. The order
    is repeated to cover them in one epoch, so no epoch's end falls among the timed steps."""
    reps = math.ceil(most * steps.per_call * batch_size / len(x))
    if reps > 1:
        x, y = np.concatenate([x] * reps), np.concatenate([y] * reps)
    model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0,
              callbacks=[steps.callback()])


def _speed(store: Store, name: str, model: Any, data: tuple, settings: TrainSettings,
           c: KerasCandidate, point: str, batch_size: int, keras: Any) -> None:
    probe = point.startswith("probe")
    warmup = 1 if probe else WARMUP_STEPS
    fp32 = next((t["latency"]["p50"] for t in store.trials(settings.baseline, point="speed",
                                                            status="ok")), None)
    limit = {"most": PROBE_STEPS if probe else MAX_TIMED_STEPS}

    def want(s: Steps) -> bool:
        if len(s.times) == warmup:
            last = s.times[-1]
            if (fp32 and not probe and name != settings.baseline and last > SLOW_STEP_S
                    and last * 1000 > TOO_SLOW * fp32):
                limit["most"] = SLOW_STEPS
            s.memory.restart()
            return False
        timed = s.times[warmup:]
        if len(timed) >= limit["most"] or s.diverged():
            return True
        return len(timed) >= max(MIN_TIMED_STEPS if not probe else PROBE_STEPS, 1) and \
            sum(timed) * s.per_call >= settings.point_s

    steps = Steps(keras, c.steps_per_execution, want)
    fit(model, *data, batch_size, steps, warmup + MAX_TIMED_STEPS)
    timed = steps.times[warmup:] or steps.times
    step = {**stats(timed), "load_avg": os.getloadavg()[0]}
    details = {"first_step_s": steps.times[0] * steps.per_call, "data_wait": None,
               **steps.memory_figures(), **steps.curve(), "diverged": steps.diverged(),
               "steps_per_execution": c.steps_per_execution}
    store.put_trial(name, point, phase_kind(point), "ok", latency=step,
                    throughput=batch_size / (step["p50"] / 1000), items=batch_size,
                    peak_mb=details["train_mb"], details=details)
    if point == "speed":
        policy = model.dtype_policy
        note = f"computes in {policy.compute_dtype}, variables in {policy.variable_dtype}"
        if c.loss_scale:
            note += "; LossScaleOptimizer with a dynamic scale"
        store.put_result(name, "ok", one_time={"first_step_s": details["first_step_s"]},
                         notes=[note, f"{settings.keras_backend} backend"])


def _converge(store: Store, name: str, model: Any, data: tuple, settings: TrainSettings,
              c: KerasCandidate, recipe: KerasRecipe, batch_size: int, keras: Any) -> None:
    # A larger batch trains on as many samples as float32 does, not for as many steps.
    total = math.ceil(settings.steps * settings.batch_size / batch_size)
    calls = math.ceil(total / c.steps_per_execution)

    def want(s: Steps) -> bool:
        if len(s.times) == WARMUP_STEPS:
            s.memory.restart()
        return len(s.times) >= calls or s.diverged() is not None

    steps = Steps(keras, c.steps_per_execution, want)
    fit(model, *data, batch_size, steps, calls)
    why = steps.diverged()
    outcome: dict = {"steps": len(steps.losses) * c.steps_per_execution,
                     "final_loss": final_loss(steps.losses),
                     "final_loss_spread": tail_spread(steps.losses),
                     "first_loss": steps.losses[0], "diverged": why,
                     "nan_step": steps.nan_step, **steps.curve()}
    if not why and settings.eval:
        outcome["eval"] = evaluate(model, recipe, batch_size)
    step = stats(steps.times[WARMUP_STEPS:] or steps.times)
    details = {**steps.memory_figures(), "data_wait": None, "outcome": summary(outcome)}
    store.put_trial(name, "converge", "converge", "ok", latency=step,
                    throughput=batch_size / (step["p50"] / 1000), items=batch_size,
                    peak_mb=details["train_mb"], details=details)
    judge(store, name, settings.baseline, settings.max_drop, outcome)


def evaluate(model: Any, recipe: KerasRecipe, batch_size: int) -> dict[str, float]:
    """model.evaluate over eval_data(): the recipe's metrics first (the first judges the
    candidate), then the loss."""
    x, y = recipe.eval_arrays()
    found = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    values = {str(k): float(v) for k, v in found.items()}
    return {**{k: v for k, v in values.items() if k != "loss"}, "loss": values["loss"]}


def trains_on(store: Store, settings: TrainSettings, name: str, c: KerasCandidate) -> bool:
    """Whether the study will train this candidate to the end whatever the others do (the
    baseline, a policy not too slow to win, a switch that changes what is trained), so its
    speed run's process trains it too: each Keras process spends seconds importing Keras and
    its backend. The baseline's own run comes first, so its outcome is there to judge by."""
    trials = {(t["candidate"], t["point"]): t for t in store.trials()}
    mine, base = trials.get((name, "speed")), trials.get((settings.baseline, "speed"))
    if not mine or mine["status"] != "ok" or (mine["details"] or {}).get("diverged"):
        return False
    if name == settings.baseline:
        return True
    if (settings.baseline, "converge") not in trials or not base or base["status"] != "ok":
        return False
    if c.precision == name and name in HALF_MODES:
        return not too_slow_to_train(mine["throughput"], base["throughput"],
                                     settings.steps * settings.batch_size)
    return c.converges


def run(study: Path, name: str, phase: str) -> None:
    store = Store(study)
    settings = TrainSettings.from_dict(store.meta(Meta.CONFIG))
    row = next(r for r in store.candidates() if r["name"] == name)
    c = KerasCandidate.from_settings(row["settings"])
    probe = phase_kind(phase) == "probe"
    batch_size = int(phase[len("probe-b"):]) if probe else c.batch_size or settings.batch_size
    try:
        keras = start_keras(settings.keras_backend, settings.threads)
        keras.utils.set_random_seed(settings.seed)
        recipe = load_keras_recipe(settings.recipe)
        data = ordered(*recipe.train_arrays(), batch_size, settings.seed)
        model = build(keras, recipe, c, study / WEIGHTS, data[0][:1])
        if phase != "converge":
            _speed(store, name, model, data, settings, c, phase, batch_size, keras)
            if phase != "speed" or not trains_on(store, settings, name, c):
                return
            phase = "converge"
            del model
            keras.backend.clear_session()
            keras.utils.set_random_seed(settings.seed)
            model = build(keras, recipe, c, study / WEIGHTS, data[0][:1])
        _converge(store, name, model, data, settings, c, recipe, batch_size, keras)
    except Exception as exc:
        reason = (f"out of memory ({type(exc).__name__})" if isinstance(exc, MemoryError)
                  else describe_error(exc))
        record_failure(store, name, {phase: phase_kind(phase)}, reason,
                       first=phase == "speed",
                       verdict="converging" if phase == "converge" else None)
        traceback.print_exc()


def main() -> None:
    study, name, phase = sys.argv[1:4]
    run(Path(study), name, phase)


if __name__ == "__main__":
    main()

"""One training candidate, run in a child process through Lightning Fabric: time its steps,
track memory, data waits, loss and loss scale, then (in the convergence phase) train for the
study's steps and evaluate. Rows go to the store as they finish.

Run as `python -m hasten.train.runner STUDY_DIR CANDIDATE PHASE`, where PHASE is
`speed`, `converge`, `probe-bN` (speed at batch size N, for the batch-size search) or `audit`
(the recipe's numerics audit, which runs in its own process like every experiment).
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback
from pathlib import Path

import torch

from hasten.engine import record_failure
from hasten.errors import describe_error
from hasten.measure import Budget, Clock, MemoryWatch, peak_gpu_memory_mb, repeat, stats
from hasten.store import Meta, Store
from hasten.train.candidates import TrainCandidate, lr_scaling, lr_warmup_steps
from hasten.train.example_call import ExampleCall
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
    seed_of,
    summary,
    tail_spread,
)
from hasten.train.recipe import load_recipe
from hasten.train.settings import TrainSettings
from hasten.train.switches import batch_length

DDP_STEPS = 10  # timed steps with several processes: a fixed count that every rank takes


def make_fabric(c: TrainCandidate, device: str, devices: int):
    """A Fabric for the candidate's precision; on a CPU, fp16 autocast goes through the plugin
    with a CPU GradScaler, since Fabric(precision="16-mixed") silently switches to bf16 there."""
    from lightning_fabric import Fabric
    from lightning_fabric.plugins.precision import MixedPrecision

    kwargs: dict = {"accelerator": "cuda" if device == "cuda" else "cpu", "devices": devices,
                    "strategy": "ddp" if devices > 1 else "auto"}
    if c.precision == "16-mixed" and device != "cuda":
        kwargs["plugins"] = [MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu"))]
    else:
        kwargs["precision"] = c.precision
    return Fabric(**kwargs)


class Trainer:
    """The recipe's model, optimizer and data set up for one candidate, one step at a time;
    a larger batch than the recipe's gets its learning rate scaled, with a warm-up."""

    def __init__(self, settings: TrainSettings, c: TrainCandidate, batch_size: int,
                 seed: int | None = None):
        self.settings, self.c = settings, c
        device, devices = settings.device, settings.devices
        torch.set_num_threads(max(1, settings.threads // devices))
        self.switches = c.uses()
        for switch in self.switches:
            switch.setup()
        self.fabric = make_fabric(c, device, devices)
        self.fabric.launch()
        self.rank = self.fabric.global_rank
        self.recipe = load_recipe(settings.recipe)
        dataset = self.recipe.train_dataset()
        seed = settings.seed if seed is None else seed
        self.fabric.seed_everything(seed, verbose=False)
        self.memory = MemoryWatch()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        module = self.recipe.build_model()
        for switch in self.switches:
            switch.model(module)
        self.raw = module
        self.example_args: ExampleCall | None = None
        if any(switch.needs_example for switch in self.switches):
            self._hook = module.register_forward_pre_hook(self._capture, with_kwargs=True)
        # Built after the model changed, so it holds the parameters that train.
        optimizer = self.recipe.build_optimizer(module)
        for switch in self.switches:
            optimizer = switch.optimizer(optimizer, module, device)
        self.lr_note, self.lr_ramp = None, None
        if c.batch_size and c.batch_size != settings.batch_size:
            factor, rule = lr_scaling(optimizer, c.batch_size / settings.batch_size)
            warmup = lr_warmup_steps(converge_steps(settings, c))
            self.lr_ramp = (factor, warmup, [g["lr"] for g in optimizer.param_groups])
            self.lr_note = (f"learning rate {factor:.2f}x the recipe's for batch {c.batch_size} "
                            f"(from {settings.batch_size}; the {rule} rule for "
                            f"{type(optimizer).__name__}), ramped up over {warmup} "
                            + ("step" if warmup == 1 else "steps"))
        for switch in self.switches:
            module = switch.wrap(module)
        self.module, self.optimizer = self.fabric.setup(module, optimizer)
        self.accumulation = c.accumulation
        self.micro = batch_size // c.accumulation
        self.samples_per_step = batch_size * devices
        kwargs = {"batch_size": self.micro, "shuffle": True, "drop_last": True,
                  "generator": torch.Generator().manual_seed(seed)}
        for switch in self.switches:
            kwargs = switch.loader(kwargs, dataset)
        loader = torch.utils.data.DataLoader(dataset, **kwargs)
        if len(loader) == 0:
            raise ValueError(f"train_data() holds {len(dataset)} samples, fewer than one batch "
                             f"of {self.micro}; lower the batch size")
        self.loader = self.fabric.setup_dataloaders(loader, use_distributed_sampler=devices > 1)
        self.batches = self._forever()
        self.scaler = getattr(self.fabric.strategy.precision, "scaler", None)
        self.losses: list[float] = []
        self.scales: list[float] = []
        self.skipped = 0
        self.wait = 0.0
        self.nan_step: int | None = None

    def _capture(self, _module, args, kwargs) -> None:
        """Keep the first forward call's inputs, positional and by keyword: the example inputs
        an artifact written after training is rebuilt and called with."""
        self.example_args = ExampleCall.capture(args, kwargs)
        self._hook.remove()

    def prepared(self, batch):
        """A batch as the switches want it (a layout, padding cut off)."""
        for switch in self.switches:
            batch = switch.batch(batch)
        return batch

    def _forever(self):
        epoch = 0
        while True:
            sampler = getattr(self.loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            yield from self.loader
            epoch += 1

    def step(self) -> None:
        """One optimizer step over `accumulation` micro-batches; the loss and scale are kept."""
        total = 0.0
        for i in range(self.accumulation):
            t0 = time.perf_counter()
            batch = self.prepared(next(self.batches))
            self.wait += time.perf_counter() - t0
            last = i == self.accumulation - 1
            with self.fabric.no_backward_sync(self.module, enabled=not last):
                loss = self.recipe.compute_loss(self.module, batch) / self.accumulation
                self.fabric.backward(loss)
            total += loss.detach().float().item()
        if self.fabric.world_size > 1:
            # Every rank sees the same (mean) loss, so all stop at the same step.
            total = float(self.fabric.all_reduce(torch.tensor(total), reduce_op="mean"))
        before = self.scaler.get_scale() if self.scaler else None
        if self.lr_ramp:
            factor, warmup, rates = self.lr_ramp
            scale = 1 + (factor - 1) * min(1.0, (len(self.losses) + 1) / warmup)
            for group, rate in zip(self.optimizer.param_groups, rates, strict=True):
                group["lr"] = rate * scale
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler:
            self.scales.append(self.scaler.get_scale())
            self.skipped += self.scales[-1] < before
        self.losses.append(total)
        if not math.isfinite(total) and self.nan_step is None:
            self.nan_step = len(self.losses)

    def diverged(self) -> str | None:
        """Why training cannot go on: a non-finite loss (for long, under a loss scaler)."""
        if self.nan_step is None:
            return None
        recent = self.losses[-NAN_PATIENCE:]
        if self.scaler and (len(recent) < NAN_PATIENCE or any(map(math.isfinite, recent))):
            return None
        why = f"the loss went {self.losses[self.nan_step - 1]} at step {self.nan_step}"
        eps = self.optimizer.defaults.get("eps", 1.0)
        if self.c.precision == "16-true" and eps < 2**-25:
            why += (f"; the optimizer's eps ({eps:g}) is 0 in fp16, so an update can divide "
                    "zero by zero")
        return why

    def evaluate(self) -> dict[str, float]:
        """The recipe's evaluate() over eval_data(), each metric averaged over samples."""
        dataset = self.recipe.eval_dataset()
        loader = torch.utils.data.DataLoader(dataset, batch_size=self.micro)
        sums: dict[str, float] = {}
        count = 0
        self.module.eval()
        with torch.no_grad():
            for batch in loader:
                batch = self.prepared(self.fabric.to_device(batch))
                n = batch_length(batch)
                for key, value in self.recipe.evaluate_batch(self.module, batch).items():
                    sums[key] = sums.get(key, 0.0) + float(value) * n
                count += n
        return {key: value / count for key, value in sums.items()}

    def memory_figures(self) -> dict:
        """The candidate's own memory (train_mb, hasten's one definition: see MemoryWatch) and
        the whole process's peak beside it."""
        figures = {"train_mb": self.memory.held_mb(), "peak_rss_mb": self.memory.peak_mb()}
        gpu = peak_gpu_memory_mb()
        if gpu is not None:
            figures["peak_gpu_mb"] = gpu
        return figures

    def curve(self) -> dict:
        return {"losses": self.losses, "scales": self.scales, "skipped_steps": self.skipped}


def _speed(store: Store, name: str, trainer: Trainer, settings: TrainSettings,
           point: str) -> None:
    clock = Clock(cuda=settings.device == "cuda")
    first = clock.time(trainer.step)
    probe = point.startswith("probe")
    budget = Budget(warmup=0, min_reps=MIN_TIMED_STEPS, max_reps=50, seconds=settings.point_s,
                    rel_tol=0.05)
    fp32 = next((t["latency"]["p50"] for t in store.trials(settings.baseline, point="speed",
                                                            status="ok")), None)
    for _ in range(0 if probe else WARMUP_STEPS - 1):
        last = clock.time(trainer.step)
        if (fp32 and name != settings.baseline and last > SLOW_STEP_S
                and last * 1000 > TOO_SLOW * fp32):
            # Judged on the first warm step: more warm-up would cost as much as the timing.
            budget = Budget(warmup=0, min_reps=SLOW_STEPS, max_reps=SLOW_STEPS, seconds=0.0)
            break
    if settings.devices > 1:
        # Ranks must take the same number of steps, or one waits forever in an all-reduce.
        budget = Budget(warmup=0, min_reps=DDP_STEPS, max_reps=DDP_STEPS, seconds=math.inf)
    if probe:
        budget = Budget(warmup=0, min_reps=PROBE_STEPS, max_reps=PROBE_STEPS, seconds=0.0)
    trainer.wait = 0.0
    trainer.memory.restart()
    samples = repeat(trainer.step, budget, clock)
    step = {**stats(samples), "load_avg": os.getloadavg()[0]}
    wait_share = min(1.0, trainer.wait / sum(samples))
    details = {"first_step_s": first, "data_wait": wait_share, **trainer.memory_figures(),
               **trainer.curve(), "diverged": trainer.diverged()}
    if trainer.rank == 0:
        store.put_trial(name, point, phase_kind(point), "ok", latency=step,
                        throughput=trainer.samples_per_step / (step["p50"] / 1000),
                        items=trainer.samples_per_step, peak_mb=_peak(details),
                        details=details)
        if point == "speed":
            store.put_result(name, "ok", one_time={"first_step_s": first},
                             notes=[f"data wait {wait_share:.0%} of step time",
                                    *([trainer.lr_note] if trainer.lr_note else [])])


def _peak(figures: dict) -> float:
    """The memory figure candidates are compared by: GPU memory on CUDA, else RSS growth."""
    return figures.get("peak_gpu_mb", figures["train_mb"])


def converge_steps(settings: TrainSettings, c: TrainCandidate) -> int:
    """A larger batch trains on as many samples as fp32 does, not for as many steps."""
    return math.ceil(settings.steps * settings.batch_size / (c.batch_size or settings.batch_size))


def _converge(store: Store, study: Path, name: str, trainer: Trainer,
              settings: TrainSettings, point: str) -> None:
    clock = Clock(cuda=settings.device == "cuda")
    times = []
    why = None
    for _ in range(converge_steps(settings, trainer.c)):
        if len(times) == WARMUP_STEPS:
            trainer.memory.restart()
        times.append(clock.time(trainer.step))
        why = trainer.diverged()
        if why:
            break
    outcome: dict = {"steps": len(trainer.losses), "final_loss": final_loss(trainer.losses),
                     "final_loss_spread": tail_spread(trainer.losses),
                     "first_loss": trainer.losses[0], "diverged": why,
                     "nan_step": trainer.nan_step, **trainer.curve()}
    first = seed_of(point) == 0
    if not why and trainer.rank == 0 and first:
        folder = study / "artifacts" / name.replace("/", "_")
        for switch in trainer.switches:
            outcome.update(switch.trained(trainer.raw, trainer.example_args, settings.recipe,
                                          folder))
    if not why and settings.eval:
        outcome["eval"] = trainer.evaluate()
    if trainer.rank != 0:
        return
    step = stats(times[WARMUP_STEPS:] or times)
    details = {**trainer.memory_figures(), "data_wait": None, "outcome": summary(outcome)}
    store.put_trial(name, point, "converge", "ok", latency=step,
                    throughput=trainer.samples_per_step / (step["p50"] / 1000),
                    items=trainer.samples_per_step, peak_mb=_peak(details), details=details)
    judge(store, name, settings.baseline, settings.max_drop, outcome if first else None)


def _audit(store: Store, settings: TrainSettings) -> None:
    """The numerics audit of the recipe (hasten.numerics.audit), its verdict and confirmation
    runs kept to be shown beside the precision modes."""
    from hasten.numerics.audit import audit_recipe

    result = audit_recipe(settings.recipe, batch_size=min(settings.batch_size, 16), steps=2,
                          max_drop=settings.max_drop)
    store.set_meta(Meta.AUDIT, {"verdict": result["verdict"], "confirm": result["confirm"],
                             "loss_scale": result["loss_scale"], "seconds": result["seconds"]})


def run(study: Path, name: str, phase: str) -> None:
    store = Store(study)
    settings = TrainSettings.from_dict(store.meta(Meta.CONFIG))
    if phase == "audit":
        _audit(store, settings)
        return
    row = next(c for c in store.candidates() if c["name"] == name)
    c = TrainCandidate.from_settings(row["settings"])
    probe = phase_kind(phase) == "probe"
    batch_size = int(phase[len("probe-b"):]) if probe else c.batch_size or settings.batch_size
    try:
        trainer = Trainer(settings, c, batch_size, settings.seed + seed_of(phase))
        if phase_kind(phase) == "converge":
            _converge(store, study, name, trainer, settings, phase)
        else:
            _speed(store, name, trainer, settings, phase)
    except Exception as exc:
        record_failure(store, name, {phase: phase_kind(phase)}, _oom_or(exc),
                       first=phase == "speed",
                       verdict="converging" if phase_kind(phase) == "converge" else None)
        traceback.print_exc()


def _oom_or(exc: BaseException) -> str:
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return f"out of memory ({type(exc).__name__})"
    return describe_error(exc)


def main() -> None:
    study, name, phase = sys.argv[1:4]
    run(Path(study), name, phase)


if __name__ == "__main__":
    main()

"""Keras training candidates: a dtype policy with switches on top (loss scaling off, a float32
output, XLA, steps per execution) and, for the batch-size search, a larger batch; with the
reason one cannot run here and the lines that set it up. Pure Python: nothing here imports
Keras, so the parent and the lint rules read the menu without TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass

BASELINE = "float32"
HALF_MODES = ("mixed_float16", "mixed_bfloat16", "float16", "bfloat16")
STEPS_PER_EXECUTION = 8


@dataclass(frozen=True)
class KerasSwitch:
    """One change to how a Keras model is compiled or built, measured on each policy in
    `bases`; `converges` when it may change what is trained (so it always trains to the end),
    `group` the speed group of a speed-only switch; quick mode measures it on `quick_bases`."""

    name: str
    bases: tuple[str, ...]
    quick_bases: tuple[str, ...]
    converges: bool
    group: str | None
    description: str


SWITCHES = {s.name: s for s in (
    KerasSwitch("no-loss-scale", ("mixed_float16",), (), True, None,
                "mixed_float16 compiled with auto_scale_loss=False: no LossScaleOptimizer"),
    KerasSwitch("float32-output", ("mixed_float16", "mixed_bfloat16"), ("mixed_float16",),
                True, None,
                "a linear Activation with dtype float32 after the model's last layer"),
    KerasSwitch("xla", (BASELINE,), (), False, "compile",
                "compile(jit_compile=True): the train step compiled by XLA"),
    KerasSwitch(f"steps-per-execution-{STEPS_PER_EXECUTION}", (BASELINE,), (), False,
                "steps", f"compile(steps_per_execution={STEPS_PER_EXECUTION}): several steps "
                "per call of the compiled train function"),
)}


@dataclass(frozen=True)
class KerasCandidate:
    """A Keras configuration: a dtype policy (`precision`, as the store's rows name it), the
    switches on top of it, and the batch size when it is not the study's."""

    precision: str = BASELINE
    switches: tuple[str, ...] = ()
    batch_size: int | None = None

    @property
    def name(self) -> str:
        parts = [*self.switches, *([f"batch-{self.batch_size}"] if self.batch_size else [])]
        return f"{self.precision}/{'+'.join(parts)}" if parts else self.precision

    def uses(self) -> list[KerasSwitch]:
        return [SWITCHES[s] for s in self.switches]

    @property
    def loss_scale(self) -> bool:
        """Whether compile wraps the optimizer in a LossScaleOptimizer (mixed_float16 only)."""
        return self.precision == "mixed_float16" and "no-loss-scale" not in self.switches

    @property
    def jit_compile(self) -> bool:
        return "xla" in self.switches

    @property
    def steps_per_execution(self) -> int:
        return STEPS_PER_EXECUTION if any(s.group == "steps" for s in self.uses()) else 1

    @property
    def float32_output(self) -> bool:
        return "float32-output" in self.switches

    @property
    def converges(self) -> bool:
        """Whether it always trains to the end (see hasten.train.candidates.TrainCandidate)."""
        return self.batch_size is not None or any(s.converges for s in self.uses())

    def settings(self) -> dict:
        """The fields to store, as a PyTorch candidate's."""
        return {"precision": self.precision, "switches": list(self.switches),
                "batch_size": self.batch_size}

    @classmethod
    def from_settings(cls, settings: dict) -> KerasCandidate:
        return cls(settings["precision"], tuple(settings["switches"]), settings["batch_size"])


def menu() -> list[tuple[KerasCandidate, bool]]:
    """Every candidate, with whether quick mode measures it (every policy and the float32 output
    under mixed_float16): every policy, then each switch on each policy it is measured on."""
    out = [(KerasCandidate(policy), True) for policy in (BASELINE, *HALF_MODES)]
    for switch in SWITCHES.values():
        out.extend((KerasCandidate(base, (switch.name,)), base in switch.quick_bases)
                   for base in switch.bases)
    return out


def batch_candidate(precision: str, batch_size: int) -> KerasCandidate:
    """The candidate the batch-size search adds: its policy at the largest batch that fits."""
    return KerasCandidate(precision, (), batch_size)


def combine(precision: str, winners: list[KerasCandidate]) -> KerasCandidate:
    """The policy with every winning switch at once."""
    return KerasCandidate(precision, tuple(s for w in winners for s in w.switches))


def half_type(precision: str) -> str:
    """The 16-bit type a policy computes in: fp16 or bf16."""
    return "bf16" if "bfloat16" in precision else "fp16"


def skip_reason(c: KerasCandidate, backend: str, model: dict, quick: bool,
                in_quick: bool) -> str | None:
    """Why this candidate cannot run on this backend and model (`model`: what the recipe's
    check found), or None when it can."""
    if quick and not in_quick:
        return "not in quick mode"
    if c.jit_compile and backend != "tensorflow":
        return ("jit_compile is XLA on the tensorflow backend; on torch Keras hands it to "
                "torch.compile, which hasten's PyTorch study measures")
    if c.steps_per_execution > 1 and backend != "tensorflow":
        return "Keras' torch backend runs one step per call (steps_per_execution must be 1)"
    if c.float32_output and model.get("output_dtype", {}).get(c.precision) == "float32":
        return f"the recipe's last layer already computes in float32 under {c.precision}"
    return None


def code_lines(c: KerasCandidate, backend: str) -> list[str]:
    """The lines that set this candidate up, as a Keras user writes them."""
    lines = [f'os.environ["KERAS_BACKEND"] = "{backend}"  # before importing keras']
    if c.precision != BASELINE:
        lines.append(f'keras.mixed_precision.set_global_policy("{c.precision}")')
    lines.append("model = model()  # built after the policy is set")
    if c.float32_output:
        lines.append('outputs = keras.layers.Activation("linear", dtype="float32")'
                     "(model.outputs[0])  # or dtype=\"float32\" on the last layer")
        lines.append("model = keras.Model(model.inputs, outputs)")
    args = ["optimizer", "loss=loss", "metrics=metrics"]
    if c.loss_scale:
        args[0] = "keras.mixed_precision.LossScaleOptimizer(optimizer)"
    if c.precision == "mixed_float16" and not c.loss_scale:
        args.append("auto_scale_loss=False")
    args.append(f"jit_compile={c.jit_compile}")
    if c.steps_per_execution > 1:
        args.append(f"steps_per_execution={c.steps_per_execution}")
    lines.append(f"model.compile({', '.join(args)})")
    if c.batch_size:
        lines.append(f"model.fit(x, y, batch_size={c.batch_size})")
    return lines

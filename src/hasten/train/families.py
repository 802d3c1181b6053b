"""The two kinds of training study behind one interface: PyTorch recipes (candidates run by
Lightning Fabric) and Keras recipes (dtype policies and Keras switches), so that the study's
phases (hasten.train.run) and its views are written once for both."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hasten.errors import HastenError
from hasten.train import candidates
from hasten.train.keras import candidates as keras_candidates
from hasten.train.outcome import SEEDS
from hasten.train.settings import TrainSettings

KERAS_BACKENDS = ("tensorflow", "torch")
# What a family's check gives: the facts the study records about the model, and what writes
# the state every trial starts from into the study folder.
Checked = tuple[dict, Callable[[Path], None]]


class Family(ABC):
    """What differs between a PyTorch and a Keras training study."""

    baseline: str
    modes: tuple[str, ...]  # the precision modes besides the baseline
    precision_modes: tuple[str, ...]  # the candidates that change the precision only
    runtime: str
    runner: str  # the module a trial process runs
    word: str  # how messages name the baseline
    seeds: int  # convergence runs of the baseline and of a would-be recommendation
    audits: bool  # whether `hasten numerics audit` runs as the study's first phase

    @abstractmethod
    def refuse(self, asked: str | None, backend: str, device: str, devices: int) -> None:
        """Raise one sentence when the study's settings do not fit this kind of recipe
        (`asked`: the Keras backend the user asked for; `backend`: the one a Keras study
        would use)."""

    @abstractmethod
    def load(self, recipe: str | Path) -> Any:
        """The recipe loaded (its code runs); `.path` is its file."""

    @abstractmethod
    def has_eval(self, loaded: Any) -> bool:
        """Whether the recipe can be evaluated (the default of `evaluate`)."""

    @abstractmethod
    def check(self, loaded: Any, batch_size: int, evaluate: bool) -> Checked:
        """One small step in the baseline's precision, so that a recipe whose data does not
        fit its model fails here in one sentence, not in every trial."""

    @abstractmethod
    def candidate(self, settings: dict) -> Any:
        """The candidate stored with these settings."""

    @abstractmethod
    def menu(self) -> list[tuple[Any, bool]]:
        """Every candidate, with whether quick mode measures it."""

    @abstractmethod
    def skip_reason(self, c: Any, settings: TrainSettings, in_quick: bool) -> str | None:
        """Why the candidate cannot run with these settings, or None."""

    @abstractmethod
    def batch_candidate(self, precision: str, batch_size: int) -> Any:
        """The candidate the batch-size search adds."""

    @abstractmethod
    def combine(self, precision: str, winners: list[Any]) -> Any:
        """The precision mode with every winning switch at once."""

    @abstractmethod
    def half_type(self, precision: str) -> str:
        """The 16-bit type a precision mode computes in: fp16 or bf16."""

    @abstractmethod
    def code_lines(self, c: Any, settings: TrainSettings) -> list[str]:
        """The lines that set the candidate up, as a user of this framework writes them."""

    def speed_group(self, c: Any) -> str | None:
        """The speed-only group of a single-switch candidate, or None."""
        uses = c.uses()
        return uses[0].group if len(uses) == 1 and c.batch_size is None else None


class TorchFamily(Family):
    """A recipe whose model() returns a torch.nn.Module."""

    baseline = candidates.BASELINE
    modes = candidates.HALF_MODES
    precision_modes = (candidates.BASELINE, f"{candidates.BASELINE}/tf32", *candidates.HALF_MODES)
    runtime, runner, word, seeds, audits = "fabric", "hasten.train.runner", "fp32", SEEDS, True

    def refuse(self, asked: str | None, backend: str, device: str, devices: int) -> None:
        if asked:
            raise HastenError("`keras_backend` is for Keras recipes; this recipe's model() "
                              "returns a PyTorch module.")

    def load(self, recipe: str | Path) -> Any:
        from hasten.train.recipe import load_recipe

        return load_recipe(recipe)

    def has_eval(self, loaded: Any) -> bool:
        return loaded.eval_data is not None and loaded.evaluate is not None

    def check(self, loaded: Any, batch_size: int, evaluate: bool) -> Checked:
        """Build the model, run one small training step and one evaluation batch in fp32."""
        from hasten.train import switches

        torch.manual_seed(0)
        module = loaded.build_model().train()
        optimizer = loaded.build_optimizer(module)
        dataset = loaded.train_dataset()
        size = len(dataset)
        if size < batch_size:
            raise HastenError(f"{loaded.path.name}: train_data() holds {size} samples, fewer "
                              f"than one batch of {batch_size}; lower `batch_size`.")
        batch = next(loaded.batches(min(batch_size, 2), 1))
        loss = loaded.compute_loss(module, batch)
        if not loss.requires_grad:
            raise HastenError(f"{loaded.path.name}: the loss does not depend on the model's "
                              "trainable parameters, so nothing would train.")
        if not torch.isfinite(loss.detach()).all():
            raise HastenError(f"{loaded.path.name}: the loss is {loss.item()} at step 1 in plain"
                              " fp32; fix the loss, the data or the learning rate first.")
        loss.backward()
        if evaluate:
            loader = torch.utils.data.DataLoader(loaded.eval_dataset(), batch_size=2)
            module.eval()
            with torch.no_grad():
                loaded.evaluate_batch(module, next(iter(loader)))
        facts = switches.describe(module, optimizer, dataset)
        return {**facts, "train_size": size}, lambda folder: None

    def candidate(self, settings: dict) -> candidates.TrainCandidate:
        return candidates.TrainCandidate.from_settings(settings)

    def menu(self) -> list[tuple[Any, bool]]:
        return list(candidates.menu())

    def skip_reason(self, c: Any, settings: TrainSettings, in_quick: bool) -> str | None:
        return candidates.skip_reason(c, settings, in_quick)

    def batch_candidate(self, precision: str, batch_size: int) -> Any:
        return candidates.batch_candidate(precision, batch_size)

    def combine(self, precision: str, winners: list[Any]) -> Any:
        return candidates.combine(precision, winners)

    def half_type(self, precision: str) -> str:
        return "fp16" if precision.startswith("16") else "bf16"

    def code_lines(self, c: Any, settings: TrainSettings) -> list[str]:
        return candidates.code_lines(c, settings.device, settings.devices)


class KerasFamily(Family):
    """A recipe whose model() returns a keras.Model; every trial starts from the weights saved
    once in the study folder."""

    baseline = keras_candidates.BASELINE
    modes = keras_candidates.HALF_MODES
    precision_modes = (keras_candidates.BASELINE, *keras_candidates.HALF_MODES)
    runtime, runner, word, seeds, audits = ("keras", "hasten.train.keras.runner", "float32", 1,
                                            False)

    def refuse(self, asked: str | None, backend: str, device: str, devices: int) -> None:
        if backend == "tensorflow" and not tensorflow_installed():
            raise HastenError("The tensorflow backend needs TensorFlow, which is not "
                              "installed: pip install 'hasten[keras]', or use `keras_backend` "
                              "torch.")
        if devices != 1 or device != "cpu":
            raise HastenError("A Keras study trains in one process on the CPU; leave `devices` "
                              "at 1 and `device` at cpu.")

    def load(self, recipe: str | Path) -> Any:
        from hasten.train.keras.recipe import load_keras_recipe

        return load_keras_recipe(recipe)

    def has_eval(self, loaded: Any) -> bool:
        return loaded.has_eval

    def check(self, loaded: Any, batch_size: int, evaluate: bool) -> Checked:
        """The recipe's check in float32, and its initial weights saved whole (under a
        temporary name, then renamed) as every trial's start."""
        from hasten.train.keras import recipe as keras_recipe
        from hasten.train.keras.runner import WEIGHTS

        facts, model = keras_recipe.check(loaded, batch_size, evaluate)

        def save(folder: Path) -> None:
            """Write the initial weights into the study folder, once."""
            if not (folder / WEIGHTS).is_file():
                partial = folder / f"partial.{WEIGHTS}"
                model.save_weights(partial)
                partial.replace(folder / WEIGHTS)

        return facts, save

    def candidate(self, settings: dict) -> keras_candidates.KerasCandidate:
        return keras_candidates.KerasCandidate.from_settings(settings)

    def menu(self) -> list[tuple[Any, bool]]:
        return list(keras_candidates.menu())

    def skip_reason(self, c: Any, settings: TrainSettings, in_quick: bool) -> str | None:
        return keras_candidates.skip_reason(c, settings.keras_backend, settings.model,
                                            settings.quick, in_quick)

    def batch_candidate(self, precision: str, batch_size: int) -> Any:
        return keras_candidates.batch_candidate(precision, batch_size)

    def combine(self, precision: str, winners: list[Any]) -> Any:
        return keras_candidates.combine(precision, winners)

    def half_type(self, precision: str) -> str:
        return keras_candidates.half_type(precision)

    def code_lines(self, c: Any, settings: TrainSettings) -> list[str]:
        return keras_candidates.code_lines(c, settings.keras_backend)


def tensorflow_installed() -> bool:
    """Whether TensorFlow can be imported here (it is not imported to find out)."""
    return importlib.util.find_spec("tensorflow") is not None


def default_keras_backend() -> str:
    """tensorflow when it is installed, else torch (Keras 3 runs on PyTorch too)."""
    return "tensorflow" if tensorflow_installed() else "torch"


TORCH = TorchFamily()
KERAS = KerasFamily()


def family(settings: TrainSettings) -> Family:
    """The family of a study's settings: Keras when they name a Keras backend."""
    return KERAS if settings.keras_backend else TORCH

"""Training recipes: a Python file of plain functions that says what to train and how.

A recipe defines `model()`, `train_data()` (a Dataset) and `loss(model, batch)`, and may define
`optimizer(params)`, `eval_data()` and `evaluate(model, batch) -> dict`. Loading a recipe
imports and runs its code: use only files you trust.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hasten.errors import HastenError
from hasten.train.recipe_file import import_recipe, is_keras_model

REQUIRED = ("model", "train_data", "loss")
OPTIONAL = ("optimizer", "eval_data", "evaluate")


@dataclass
class Recipe:
    """The functions a recipe file defines."""

    path: Path
    model: Callable[[], torch.nn.Module]
    train_data: Callable[[], Any]
    loss: Callable[[torch.nn.Module, Any], torch.Tensor]
    optimizer: Callable | None = None
    eval_data: Callable | None = None
    evaluate: Callable | None = None

    def build_model(self) -> torch.nn.Module:
        """Call model() and check that it gave a module."""
        module = _call(self, "model")
        if is_keras_model(module):
            raise HastenError(f"{self.path.name} is a Keras recipe; the numerics audit follows "
                              "PyTorch models only (`hasten train` measures a Keras recipe's "
                              "precision policies).")
        if not isinstance(module, torch.nn.Module):
            raise HastenError(f"{self.path.name}: model() must return a torch.nn.Module or a "
                              f"keras.Model, "
                              f"not {type(module).__name__}.")
        return module

    def build_optimizer(self, module: torch.nn.Module) -> torch.optim.Optimizer:
        """The recipe's optimizer, or AdamW (lr 1e-3) when it defines none."""
        if self.optimizer is None:
            return torch.optim.AdamW(module.parameters(), lr=1e-3)
        return _call(self, "optimizer", module.parameters())

    def train_dataset(self) -> Any:
        """train_data(), checked to be a Dataset with samples."""
        return self._dataset("train_data")

    def eval_dataset(self) -> Any:
        """eval_data(), checked like train_data()."""
        if self.eval_data is None or self.evaluate is None:
            raise HastenError(f"{self.path.name} defines no eval_data() and evaluate(model, "
                              "batch); add both to evaluate, or run without `evaluate`.")
        return self._dataset("eval_data")

    def _dataset(self, name: str) -> Any:
        dataset = _call(self, name)
        try:
            size = len(dataset)
        except TypeError:
            raise HastenError(f"{self.path.name}: {name}() must return a Dataset with a "
                              "length, such as a TensorDataset.") from None
        if size == 0:
            raise HastenError(f"{self.path.name}: {name}() returned an empty dataset.")
        return dataset

    def batches(self, batch_size: int, count: int, seed: int = 0) -> Iterator[Any]:
        """Up to `count` training batches, in the same order on every call."""
        dataset = self.train_dataset()
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        )
        for i, batch in enumerate(loader):
            if i == count:
                return
            yield batch

    def compute_loss(self, module: torch.nn.Module, batch: Any) -> torch.Tensor:
        """loss(model, batch), checked to be a scalar tensor."""
        value = _call(self, "loss", module, batch)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise HastenError(f"{self.path.name}: loss(model, batch) must return a scalar "
                              f"tensor, not {_describe(value)}.")
        return value

    def evaluate_batch(self, module: torch.nn.Module, batch: Any) -> dict[str, float]:
        """evaluate(model, batch), checked to be a dict of numbers."""
        metrics = _call(self, "evaluate", module, batch)
        if not isinstance(metrics, dict) or not metrics:
            raise HastenError(f"{self.path.name}: evaluate(model, batch) must return a dict of "
                              f"metrics such as {{'accuracy': 0.9}}, not {_describe(metrics)}.")
        try:
            return {str(k): float(v) for k, v in metrics.items()}
        except (TypeError, ValueError):
            raise HastenError(f"{self.path.name}: evaluate(model, batch) must return numbers, "
                              f"not {metrics!r:.200}.") from None


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def _call(recipe: Recipe, name: str, *args: Any) -> Any:
    """Call one of the recipe's functions; its exceptions become one clear error."""
    try:
        return getattr(recipe, name)(*args)
    except HastenError:
        raise
    except (Exception, SystemExit) as exc:
        raise HastenError(f"{recipe.path.name}: {name}() failed ({type(exc).__name__}: {exc}); "
                          "fix the recipe or its data.") from exc


def is_keras_recipe(path: str | Path) -> bool:
    """Whether a recipe file's model() returns a Keras model: a Keras recipe, which
    hasten.train.keras runs. Imports the file and calls model(); Keras is imported only when
    the recipe imports it."""
    module = import_recipe(path)
    build = getattr(module, "model", None)
    if not callable(build):
        return False
    return is_keras_model(_call(Recipe(Path(module.__file__), build, None, None), "model"))


def load_recipe(path: str | Path) -> Recipe:
    """Import a recipe file (this runs its code) and check it defines what a recipe needs."""
    module = import_recipe(path)
    path = Path(module.__file__)
    missing = [n for n in REQUIRED if not callable(getattr(module, n, None))]
    if missing:
        raise HastenError(
            f"{path.name} has no {', '.join(f'{n}()' for n in missing)}; a recipe defines "
            "model(), train_data() and loss(model, batch)."
        )
    found = {n: getattr(module, n, None) for n in REQUIRED + OPTIONAL}
    return Recipe(path=path, **{n: f for n, f in found.items() if callable(f)})

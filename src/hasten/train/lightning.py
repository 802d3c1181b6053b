"""A LightningModule as a training recipe, without rewriting it: a recipe file imports the
user's module (and data module) and takes its functions from `recipe_from`:

    from hasten.train.lightning import recipe_from
    from my_project import LitClassifier, LitData

    model, train_data, loss, optimizer, eval_data, evaluate = recipe_from(LitClassifier, LitData)

The adapter is duck-typed, so Lightning itself need not be installed: the module needs
`training_step(batch, batch_idx)` and `configure_optimizers()`, and the module or the data
module a `train_dataloader()`; `validation_step` with a `val_dataloader()` gives the evaluation,
its metrics what `self.log` receives. As Lightning's Trainer does, it calls `prepare_data()`,
`setup("fit")` and `configure_model()` where they are defined, and runs each whole step under
the candidate's precision. The loaders' datasets and collate functions are kept (hasten sets the
batch size and order); learning-rate schedulers are not stepped, other hooks are not called, and
manual optimization is refused.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate

from hasten.errors import HastenError

# Where Lightning's base classes live: a method they define is not the user's.
LIGHTNING_PACKAGES = ("lightning.", "pytorch_lightning.", "lightning_fabric.")


class Functions(NamedTuple):
    """The recipe functions (see hasten.train.recipe); eval_data and evaluate are None when the
    module has no validation_step or nothing has a val_dataloader()."""

    model: Callable[[], nn.Module]
    train_data: Callable[[], Any]
    loss: Callable[[nn.Module, Any], torch.Tensor]
    optimizer: Callable[[Any], torch.optim.Optimizer]
    eval_data: Callable[[], Any] | None
    evaluate: Callable[[nn.Module, Any], dict[str, float]] | None


class Step(NamedTuple):
    """One step call sent through the model's forward, so that the precision context, the
    compiler and DDP see the whole step: the method, the batch and its index."""

    method: str
    batch: Any
    index: int


class LightningStep(nn.Module):
    """The user's module inside a plain one: called with a Step it runs that step method,
    otherwise it is the module's own forward. Its `log`/`log_dict` keep what evaluation logs."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.logged: dict[str, Any] | None = None  # a dict only while evaluate() runs
        module.log = self._log
        module.log_dict = self._log_dict

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and isinstance(args[0], Step):
            step = args[0]
            return getattr(self.module, step.method)(step.batch, step.index)
        return self.module(*args, **kwargs)

    def register_forward_pre_hook(self, hook: Callable, *, prepend: bool = False,
                                  with_kwargs: bool = False) -> Any:
        """Pre-hooks see the user's module's own calls (`self(x)` in a step: the inputs an
        artifact is rebuilt with), not the step calls."""
        return self.module.register_forward_pre_hook(
            lambda _module, *rest: hook(self, *rest), prepend=prepend, with_kwargs=with_kwargs)

    def _log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        if self.logged is not None:
            self.logged[name] = value

    def _log_dict(self, values: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
        for name, value in values.items():
            self._log(name, value)


def recipe_from(module: Callable[[], nn.Module] | nn.Module,
                datamodule: Any = None) -> Functions:
    """The recipe functions of a LightningModule: `module` is its class (or any function that
    builds one) or an instance (copied for each model); `datamodule` likewise, or None when the
    module has its own dataloader methods."""
    recipe = LightningRecipe(module, datamodule)
    validates = recipe.validates()
    return Functions(recipe.model, recipe.train_data, recipe.loss, recipe.optimizer,
                     recipe.eval_data if validates else None,
                     recipe.evaluate if validates else None)


class LightningRecipe:
    """What the recipe functions share: how to build the module, the data module (prepared
    once), the module model() built last (whose optimizer is asked for) and the step counts."""

    def __init__(self, module: Callable[[], nn.Module] | nn.Module, datamodule: Any) -> None:
        template = module if isinstance(module, nn.Module) else None
        self.build = (lambda: copy.deepcopy(template)) if template is not None else module
        self.source = (type(template) if template is not None else
                       module if isinstance(module, type) else None)
        self.datamodule = datamodule
        self.built: LightningStep | None = None
        self.data: Any = None
        self.train_index, self.eval_index = itertools.count(), itertools.count()

    def validates(self) -> bool:
        """Whether the module has a validation_step and something a val_dataloader()."""
        source = self.source
        if source is None:  # a factory: build one module to see what it defines
            source = self.holder() if self.datamodule is None else self.build()
        return _defines(source, "validation_step") and _defines(
            source if self.datamodule is None else self.datamodule, "val_dataloader")

    def model(self) -> nn.Module:
        """A fresh module (set up as for fitting), wrapped to take step calls."""
        lm = self.build()
        if getattr(lm, "automatic_optimization", True) is False:
            raise HastenError(f"{type(lm).__name__} sets automatic_optimization = False; hasten "
                              "steps the optimizer itself, so its training_step must return "
                              "the loss.")
        for name in ("training_step", "configure_optimizers"):
            if not _defines(lm, name):
                raise HastenError(f"{type(lm).__name__} defines no {name}(); a LightningModule "
                                  "recipe needs training_step and configure_optimizers.")
        _call_defined(lm, "setup", "fit")
        _call_defined(lm, "configure_model")
        self.built = LightningStep(lm)
        return self.built

    def holder(self) -> Any:
        """The data module, else a module instance, prepared and set up once (without drawing
        from the random generators that seed the model's weights)."""
        if self.data is None:
            with torch.random.fork_rng(devices=[]):
                dm = self.datamodule
                found = (self.build() if dm is None else dm() if isinstance(dm, type) else dm)
                _call_defined(found, "prepare_data")
                _call_defined(found, "setup", "fit")
            self.data = found
        return self.data

    def train_data(self) -> Any:
        """The dataset behind train_dataloader(), batched by its own collate function."""
        return _dataset(self.holder(), "train_dataloader")

    def eval_data(self) -> Any:
        """The dataset behind val_dataloader()."""
        return _dataset(self.holder(), "val_dataloader")

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """training_step's loss (its return value, or the dict's "loss")."""
        out = model(Step("training_step", batch, next(self.train_index)))
        value = out.get("loss") if isinstance(out, Mapping) else out
        if not isinstance(value, torch.Tensor):
            raise HastenError("training_step must return the loss, or a dict with a 'loss' "
                              f"tensor, for hasten to train; it returned {type(out).__name__}.")
        return value

    def optimizer(self, params: Any) -> torch.optim.Optimizer:
        """The optimizer configure_optimizers() makes for the module model() built last."""
        if self.built is None:
            raise HastenError("optimizer() needs model() to have built the module first.")
        chosen = _one_optimizer(self.built.module.configure_optimizers())
        given = {id(p) for p in params}
        if any(id(p) not in given for g in chosen.param_groups for p in g["params"]):
            raise HastenError("configure_optimizers() optimizes parameters that are not the "
                              "module's own; build the optimizer from self.parameters().")
        return chosen

    def evaluate(self, model: nn.Module, batch: Any) -> dict[str, float]:
        """What validation_step logs (and returns) for one batch, as numbers."""
        step = next(m for m in model.modules() if isinstance(m, LightningStep))
        step.logged = {}
        try:
            out = model(Step("validation_step", batch, next(self.eval_index)))
            logged = step.logged
        finally:
            step.logged = None
        metrics = {name: _number(value) for name, value in logged.items()}
        if isinstance(out, Mapping):
            metrics.update({k: _number(v) for k, v in out.items() if k not in metrics and (
                isinstance(v, int | float) or isinstance(v, torch.Tensor) and v.numel() == 1)})
        elif isinstance(out, torch.Tensor) and not metrics:
            metrics["val_loss"] = _number(out)
        if not metrics:
            raise HastenError("validation_step logged no metric; log one with "
                              "self.log('val_accuracy', ...) or return a dict of them.")
        return metrics


def _defines(obj: Any, name: str) -> bool:
    """Whether obj (a class or an instance) has a method `name` of its own, not one of
    Lightning's base classes (theirs raise or warn that it is missing)."""
    own = {} if isinstance(obj, type) else getattr(obj, "__dict__", {})
    if name in own:
        return callable(own[name])
    for klass in obj.__mro__ if isinstance(obj, type) else type(obj).__mro__:
        if name in vars(klass):
            return callable(vars(klass)[name]) and not klass.__module__.startswith(
                LIGHTNING_PACKAGES)
    return False


def _call_defined(obj: Any, name: str, *args: Any) -> None:
    if _defines(obj, name):
        getattr(obj, name)(*args)


def _one_optimizer(found: Any) -> torch.optim.Optimizer:
    """The optimizer in what configure_optimizers() returns: an optimizer, a list or tuple of
    one, ([optimizers], [schedulers]), or a dict (or list of one) with "optimizer"."""
    if isinstance(found, torch.optim.Optimizer):
        return found
    if isinstance(found, Mapping) and "optimizer" in found:
        return _one_optimizer(found["optimizer"])
    if isinstance(found, list | tuple):
        if len(found) == 2 and isinstance(found[0], list | tuple):
            return _one_optimizer(found[0])
        if len(found) == 1:
            return _one_optimizer(found[0])
        if len(found) > 1:
            raise HastenError(f"configure_optimizers() returned {len(found)} optimizers; hasten "
                              "trains with one.")
    raise HastenError("configure_optimizers() must return an optimizer (or a list, or a dict "
                      f"with 'optimizer'), not {type(found).__name__}.")


def _dataset(holder: Any, method: str) -> Any:
    """The map-style dataset behind holder.method(), wrapped to keep a custom collate_fn."""
    if not _defines(holder, method):
        raise HastenError(f"{type(holder).__name__} defines no {method}().")
    loader = getattr(holder, method)()
    if isinstance(loader, list | tuple) and len(loader) == 1:
        loader = loader[0]
    if not isinstance(loader, DataLoader):
        raise HastenError(f"{method}() must return one DataLoader, not "
                          f"{type(loader).__name__}.")
    if isinstance(loader.dataset, IterableDataset):
        raise HastenError(f"{method}() reads an IterableDataset; hasten batches and shuffles "
                          "itself, so it needs a dataset with a length and indexing.")
    if loader.collate_fn is default_collate:
        return loader.dataset
    return Collated(loader.dataset, loader.collate_fn)


class Collated(Dataset):
    """A dataset whose batches a collate function makes, under a DataLoader that uses the
    default collate (as hasten's do): a batch's samples are collated together, handed back one
    by one (tensors split along their first dimension), and stacked again unchanged."""

    def __init__(self, dataset: Any, collate: Callable[[list], Any]) -> None:
        self.dataset, self.collate = dataset, collate

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __getitems__(self, indices: list[int]) -> list[Any]:
        batch = self.collate([self.dataset[i] for i in indices])
        return [_sample(batch, j, len(indices)) for j in range(len(indices))]


def _sample(batch: Any, j: int, n: int) -> Any:
    """Sample j of a collated batch of n."""
    if isinstance(batch, torch.Tensor) and batch.dim() > 0 and len(batch) == n:
        return batch[j]
    if isinstance(batch, Mapping):
        return {key: _sample(value, j, n) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_sample(value, j, n) for value in batch))
    if isinstance(batch, list | tuple):
        leaves = len(batch) == n and not any(
            isinstance(v, torch.Tensor | Mapping | list | tuple) for v in batch)
        return batch[j] if leaves else type(batch)(_sample(value, j, n) for value in batch)
    return batch


def _number(value: Any) -> float:
    """A logged value as a float: a scalar tensor, a number, or a metric object (compute()d
    for this batch, then reset)."""
    if hasattr(value, "compute") and hasattr(value, "reset"):
        number = value.compute()
        value.reset()
        value = number
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().mean())
    return float(value)

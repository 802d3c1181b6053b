"""Keras recipes: a Python file of plain functions, like a PyTorch recipe (hasten.train.recipe).

A Keras recipe defines `model()` returning a `keras.Model` (built by that call, under the dtype
policy a candidate sets), `train_data()` returning `(x, y)` arrays or a `tf.data.Dataset` of
`(x, y)`, and `loss` (a function returning a Keras loss or its name, or the name itself). It
may define `optimizer()` (default Adam at 1e-3), `eval_data()` like train_data() and
`metrics()` (a list of Keras metrics or names, the first one judging the candidates). Keras is
imported before the recipe, with the backend set, by whoever loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hasten.errors import HastenError
from hasten.train.recipe_file import import_recipe, is_keras_model

REQUIRED = ("model", "train_data", "loss")


@dataclass
class KerasRecipe:
    """The functions and values a Keras recipe file defines."""

    path: Path
    module: Any

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self.module, name)(*args)
        except HastenError:
            raise
        except (Exception, SystemExit) as exc:
            raise HastenError(f"{self.path.name}: {name}() failed ({type(exc).__name__}: "
                              f"{exc}); fix the recipe or its data.") from exc

    def build_model(self) -> Any:
        """Call model() and check that it gave a keras.Model."""
        model = self._call("model")
        if not is_keras_model(model):
            raise HastenError(f"{self.path.name}: model() must return a keras.Model, not "
                              f"{type(model).__name__}.")
        return model

    def loss(self) -> Any:
        """The loss to compile with: loss() called, or the name the recipe gives."""
        value = self.module.loss
        return value if isinstance(value, str) else self._call("loss")

    def optimizer(self) -> Any:
        """A fresh optimizer: the recipe's optimizer(), or Adam at 1e-3."""
        if callable(getattr(self.module, "optimizer", None)):
            return self._call("optimizer")
        import keras

        return keras.optimizers.Adam(1e-3)

    def metrics(self) -> list:
        return list(self._call("metrics")) if callable(getattr(self.module, "metrics", None)) \
            else []

    @property
    def has_eval(self) -> bool:
        return callable(getattr(self.module, "eval_data", None))

    def train_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """train_data() as (x, y) arrays with as many samples each."""
        return self._arrays("train_data")

    def eval_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.has_eval:
            raise HastenError(f"{self.path.name} defines no eval_data(); add it to evaluate, "
                              "or run without `evaluate`.")
        return self._arrays("eval_data")

    def _arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        data = self._call(name)
        if type(data).__module__.startswith("tensorflow"):
            data = _from_dataset(data)
        if not (isinstance(data, tuple | list) and len(data) == 2):
            raise HastenError(f"{self.path.name}: {name}() must return (x, y) arrays or a "
                              f"tf.data.Dataset of (x, y), not {type(data).__name__}.")
        x, y = (np.asarray(a) for a in data)
        if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
            raise HastenError(f"{self.path.name}: {name}() gave x of shape {x.shape} and y of "
                              f"shape {y.shape}; they need as many samples each.")
        if len(x) == 0:
            raise HastenError(f"{self.path.name}: {name}() returned no samples.")
        return x, y


def _from_dataset(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """A tf.data.Dataset of (x, y), batched or not, as two arrays (it must fit in memory):
    every candidate then batches the same samples in the same order itself."""
    spec = dataset.element_spec
    if isinstance(spec, tuple) and spec and spec[0].shape.rank and spec[0].shape[0] is None:
        dataset = dataset.unbatch()
    xs, ys = [], []
    for x, y in dataset.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return np.stack(xs), np.stack(ys)


def load_keras_recipe(path: str | Path) -> KerasRecipe:
    """Import a Keras recipe file (this runs its code) and check it defines what one needs."""
    module = import_recipe(path)
    missing = [n for n in REQUIRED if getattr(module, n, None) is None
               or not (callable(getattr(module, n)) or n == "loss"
                       and isinstance(module.loss, str))]
    name = Path(module.__file__).name
    if missing:
        raise HastenError(f"{name} has no {', '.join(f'{n}()' for n in missing)}; a Keras "
                          "recipe defines model(), train_data() and loss.")
    return KerasRecipe(Path(module.__file__), module)


def check(recipe: KerasRecipe, batch_size: int, evaluate: bool) -> tuple[dict, Any]:
    """Build the model in float32, compile it and run one training step on two samples (and
    one evaluation batch), so a recipe whose model does not compile or whose data does not fit
    fails here in one sentence, not in every trial. Returns what the study records about the
    model (with the dtype its outputs have under each mixed policy) and the model, holding
    its initial weights, which every candidate starts from."""
    import keras

    name = recipe.path.name
    x, y = recipe.train_arrays()
    if len(x) < batch_size:
        raise HastenError(f"{name}: train_data() holds {len(x)} samples, fewer than one batch "
                          f"of {batch_size}; lower `batch_size`.")
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    model = recipe.build_model()
    _step(name, "building the model on 1 sample", lambda: model(x[:1]) if not model.built
          else None)
    initial = model.get_weights()
    _step(name, "compiling the model with its loss and metrics",
          lambda: model.compile(optimizer=recipe.optimizer(), loss=recipe.loss(),
                                metrics=recipe.metrics(), jit_compile=False))
    logs = _step(name, "one training step on 2 samples of train_data()",
                 lambda: model.train_on_batch(x[:2], y[:2], return_dict=True))
    loss = float(logs["loss"])
    if not np.isfinite(loss):
        raise HastenError(f"{name}: the loss is {loss} at step 1 in float32; fix the loss, the "
                          "data or the learning rate first.")
    if evaluate:
        ex, ey = recipe.eval_arrays()
        _step(name, "evaluating 2 samples of eval_data()",
              lambda: model.test_on_batch(ex[:2], ey[:2]))
    model.set_weights(initial)
    # Names Keras numbers per process (sequential_3) are left out: a resumed study must
    # find the same facts.
    facts = {"model": f"Keras {type(model).__name__}, {model.count_params():,} parameters",
             "train_size": len(x), "keras": keras.__version__,
             "last_layer": type(model.layers[-1]).__name__ if model.layers else None,
             "output_dtype": {p: _output_dtype(keras, recipe, p, x[:2])
                              for p in ("mixed_float16", "mixed_bfloat16")}}
    keras.mixed_precision.set_global_policy("float32")
    return facts, model


def _step(name: str, what: str, fn: Any) -> Any:
    """Run one step of the check; its failure becomes one sentence saying which step."""
    try:
        return fn()
    except HastenError:
        raise
    except Exception as exc:
        text = (str(exc).strip().splitlines() or [""])[0][:200]
        raise HastenError(f"{name}: {what} failed ({type(exc).__name__}: {text}); check that "
                          "the data fits the model's inputs and the loss.") from exc


def _output_dtype(keras: Any, recipe: KerasRecipe, policy: str, x: np.ndarray) -> str:
    """The dtype the model's (first) output has when built under `policy`: float16 or
    bfloat16 when its last layer follows the policy, float32 when the recipe keeps it so."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        out = recipe.build_model()(x)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    first = keras.tree.flatten(out)[0]
    return keras.backend.standardize_dtype(first.dtype)

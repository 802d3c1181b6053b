"""Quantization-aware training (QAT) with torchao: fake-quantized int8 fine-tuning, conversion to
real int8, and the trained model written as a `py:` spec that `hasten infer` can load.

The int8 scheme is torchao's `Int8DynamicActivationInt8WeightConfig` with asymmetric per-token
activations and symmetric per-channel weights: it runs on a CPU, and asymmetric is the only
per-token activation scheme torchao's QAT fake-quantizes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hasten.errors import HastenError
from hasten.train.example_call import ExampleCall

MODEL_PY = '''"""A QAT-trained int8 model for hasten: --model py:{folder}/model.py:build

build() imports and runs the training recipe's code ({recipe}) to build the
model, so load this file only if you trust that recipe.
"""

from pathlib import Path

import torch

from hasten.train.example_call import ExampleCall
from hasten.train.qat import convert, prepare
from hasten.train.recipe import load_recipe

RECIPE = Path({recipe!r})
HERE = Path(__file__).resolve().parent


def build():
    """The recipe's model with the QAT-trained weights, converted to int8, and its inputs: the
    tensors of its first training call (a model called with keywords comes wrapped, so that it
    takes them in order and is called with their names, as in training)."""
    module = load_recipe(RECIPE).build_model()
    module.load_state_dict(torch.load(HERE / "weights.pt", weights_only=True))
    convert(prepare(module))
    call = ExampleCall.from_saved(torch.load(HERE / "example_inputs.pt", weights_only=True))
    return call.model_and_inputs(module.eval())
'''


def _fake_quantize_configs() -> tuple:
    """The activation and weight fake-quantization configs matching `_int8_config`."""
    from torchao.quantization.qat import IntxFakeQuantizeConfig

    return (IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False),
            IntxFakeQuantizeConfig(torch.int8, "per_channel", is_symmetric=True))


def _int8_config():
    """The post-training int8 config whose numerics the fake quantization simulates."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig
    from torchao.quantization.quant_primitives import MappingType

    return Int8DynamicActivationInt8WeightConfig(act_mapping_type=MappingType.ASYMMETRIC)


def prepare(module: torch.nn.Module) -> torch.nn.Module:
    """Fake-quantize every nn.Linear for int8 in place, so training learns to absorb the rounding.

    Only linear layers are covered (torchao's QAT has no convolutions): convolutions stay float.
    """
    from torchao.quantization import quantize_
    from torchao.quantization.qat import FakeQuantizedLinear, QATConfig

    activations, weights = _fake_quantize_configs()
    quantize_(module, QATConfig(activation_config=activations, weight_config=weights,
                                step="prepare"))
    if not any(isinstance(m, FakeQuantizedLinear) for m in module.modules()):
        raise HastenError("Quantization-aware training needs an nn.Linear layer inside the model "
                          "(torchao's QAT covers linear layers only, not convolutions), and this "
                          "model has none.")
    return module


def convert(module: torch.nn.Module) -> torch.nn.Module:
    """Swap the fake-quantized linears of a prepared model for real int8 ones, in place."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    quantize_(module, QATConfig(_int8_config(), step="convert"))
    return module


def write_artifact(module: torch.nn.Module, recipe_path: Path, folder: Path,
                   example: ExampleCall | tuple[torch.Tensor, ...] | None) -> str:
    """Write a prepared, trained model as weights plus a `model.py` that rebuilds it in int8.

    The float weights keep the recipe model's own keys (fake quantization adds no state), so
    model.py loads them into a fresh recipe model, then prepares and converts it. `example` is
    the model's first training call (positional tensors alone, or an ExampleCall with keywords
    and constants too); model.py calls the int8 model the same way. Returns the `py:` spec for
    `hasten infer`.
    """
    call = ExampleCall.of(example)
    problem = call.problem()
    if problem:
        raise HastenError("The QAT artifact needs the model called with tensors that have a "
                          "batch dimension (by position or by keyword), and its first training "
                          f"call {problem}.")
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.cpu() for k, v in module.state_dict().items()}
    torch.save(weights, folder / "weights.pt")
    torch.save(call.saved(), folder / "example_inputs.pt")
    recipe = str(Path(recipe_path).resolve())
    (folder / "model.py").write_text(MODEL_PY.format(folder=folder, recipe=recipe))
    return f"py:{folder / 'model.py'}:build"

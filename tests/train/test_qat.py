"""QAT: torchao fake quantization trains, converts to real int8, and the written `py:` artifact
loads in `hasten infer` with the int8 model's outputs; a model called with keywords (a
transformers ViT, `model(pixel_values=x)`) is rebuilt and called with them."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from test_cli import _one_error_line, hasten
from typer.testing import CliRunner

from hasten.errors import HastenError
from hasten.kinds import first_tensor
from hasten.models import load_model
from hasten.train import qat
from hasten.train.example_call import CalledAsInTraining, ExampleCall
from hasten.train.recipe import load_recipe

# Two Gaussian blobs, one per class: learnable in a few steps. Fed flat to the MLP, as 1x4x4
# images to the CNN, whose convolution stays float (torchao's QAT covers linears only), and as
# 1x16x16 images to the ViT, called with a keyword as transformers models are.
BLOBS = textwrap.dedent(
    """
    import math

    import torch


    def train_data():
        g = torch.Generator().manual_seed(0)
        features = math.prod(SHAPE[1:])
        x = torch.cat([torch.randn(64, features, generator=g) + 1,
                       torch.randn(64, features, generator=g) - 1])
        y = torch.cat([torch.zeros(64, dtype=torch.long), torch.ones(64, dtype=torch.long)])
        return torch.utils.data.TensorDataset(x.reshape(SHAPE), y)


    def optimizer(params):
        return torch.optim.AdamW(params, lr=1e-2)


    def loss(model, batch):
        x, y = batch
        return torch.nn.functional.cross_entropy(call(model, x), y)
    """
)
MODELS = {
    "mlp": """
SHAPE = (-1, 16)


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))


def call(model, x):
    return model(x)
""",
    "cnn": """
SHAPE = (-1, 1, 4, 4)


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(64, 2))


def call(model, x):
    return model(x)
""",
    "vit": """
import transformers

SHAPE = (-1, 1, 16, 16)


def model():
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=16, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, num_labels=10)
    return transformers.ViTForImageClassification(config)


def call(model, x):
    return model(pixel_values=x).logits
""",
}
# The layers whose weights are int8 after conversion; the rest (a convolution) stay float.
CONVERTED = {"mlp": {"Int8Tensor"}, "cnn": {"Int8Tensor", "Parameter"},
             "vit": {"Int8Tensor", "Parameter"}}
BASE = "torch/eager/fp32"


@dataclass
class Trained:
    """A recipe's model after a few QAT steps, with the losses and its first call's inputs."""

    recipe: Path
    module: torch.nn.Module
    losses: list[float]
    example: ExampleCall


def _train(tmp_path: Path, kind: str, steps: int = 8) -> Trained:
    """Prepare the recipe's model and train it as the runner does, capturing its first call
    (positional and keyword inputs) as the runner's forward pre-hook does."""
    path = tmp_path / f"{kind}_recipe.py"
    path.write_text(BLOBS + MODELS[kind])
    recipe = load_recipe(path)
    module = qat.prepare(recipe.build_model())
    optimizer = recipe.build_optimizer(module)
    captured = []
    hook = module.register_forward_pre_hook(
        lambda _, args, kwargs: captured.append(ExampleCall.capture(args, kwargs)) or None,
        with_kwargs=True)
    losses = []
    for batch in recipe.batches(16, steps):
        optimizer.zero_grad()
        value = recipe.compute_loss(module, batch)
        value.backward()
        optimizer.step()
        losses.append(value.item())
    hook.remove()
    return Trained(path, module, losses, captured[0])


def _outputs(module: torch.nn.Module, call: ExampleCall) -> torch.Tensor:
    """The module's output tensor (a ViT's logits) on the call's inputs, called as in training."""
    with torch.no_grad():
        return first_tensor(module(*call.args, **call.kwargs))


@pytest.mark.parametrize("kind", ["mlp", "cnn", "vit"])
def test_qat_trains_and_its_artifact_is_the_converted_int8_model(tmp_path, kind):
    trained = _train(tmp_path, kind)
    assert sum(trained.losses[-3:]) < 0.5 * sum(trained.losses[:3]), trained.losses
    module, call = trained.module.eval(), trained.example
    fake_quantized = _outputs(module, call)
    spec = qat.write_artifact(module, trained.recipe, tmp_path / "artifact", call)
    assert spec == f"py:{tmp_path / 'artifact' / 'model.py'}:build"
    converted = _outputs(qat.convert(module), call)
    loaded = load_model(spec)
    with torch.no_grad():
        from_artifact = loaded.module(*loaded.example_inputs.values())
    torch.testing.assert_close(from_artifact, converted, rtol=0, atol=1e-6)
    torch.testing.assert_close(converted, fake_quantized, rtol=0, atol=1e-4)
    weights = {type(m.weight).__name__ for m in loaded.module.modules()
               if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)}
    assert weights == CONVERTED[kind]


def test_a_model_called_with_keywords_is_rebuilt_and_called_with_them(tmp_path):
    trained = _train(tmp_path, "vit", steps=2)
    assert trained.example.args == () and list(trained.example.kwargs) == ["pixel_values"]
    qat.write_artifact(trained.module, trained.recipe, tmp_path / "artifact", trained.example)
    saved = torch.load(tmp_path / "artifact" / "example_inputs.pt", weights_only=True)
    assert saved["args"] == () and list(saved["kwargs"]) == ["pixel_values"]
    torch.testing.assert_close(saved["kwargs"]["pixel_values"],
                               trained.example.kwargs["pixel_values"])
    loaded = load_model(f"py:{tmp_path / 'artifact' / 'model.py'}:build")
    assert loaded.input_names == ["pixel_values"]
    assert tuple(loaded.example_inputs["pixel_values"].shape) == (16, 1, 16, 16)
    assert isinstance(loaded.module.model, CalledAsInTraining)
    with torch.no_grad():
        logits = loaded.module(loaded.example_inputs["pixel_values"][:3])
    assert logits.shape == (3, 10)


def test_the_artifact_holds_plain_weights_under_the_recipe_models_keys(tmp_path):
    trained = _train(tmp_path, "mlp")
    folder = tmp_path / "artifact"
    qat.write_artifact(trained.module, trained.recipe, folder, trained.example)
    weights = torch.load(folder / "weights.pt", weights_only=True)
    fresh = load_recipe(trained.recipe).build_model().state_dict()
    assert weights.keys() == fresh.keys()
    torch.testing.assert_close(weights, trained.module.state_dict())
    examples = torch.load(folder / "example_inputs.pt", weights_only=True)
    torch.testing.assert_close(examples, {"args": trained.example.args, "kwargs": {}})
    assert "runs the training recipe's code" in (folder / "model.py").read_text()


def test_a_model_without_linear_layers_is_refused():
    convolutional = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    with pytest.raises(HastenError, match=r"needs an nn\.Linear layer .* not convolutions"):
        qat.prepare(convolutional)


@pytest.mark.parametrize(("example", "why"), [
    ((), "takes no tensors"),
    (ExampleCall.capture((), {"x": [torch.ones(2, 16)]}),
     r"takes inputs that are neither .*: keyword x \(list\)"),
    (ExampleCall.capture((torch.tensor(1.0),)), "takes tensors without a batch dimension: input_0"),
])
def test_inputs_an_artifact_cannot_call_again_are_refused(tmp_path, example, why):
    trained = _train(tmp_path, "mlp", steps=1)
    with pytest.raises(HastenError, match=f"needs the model called with tensors .* call {why}"):
        qat.write_artifact(trained.module, trained.recipe, tmp_path / "artifact", example)


def test_positional_tensors_alone_still_make_an_artifact(tmp_path):
    """A tuple of tensors, as the runner's capture gave before it kept keywords."""
    trained = _train(tmp_path, "mlp", steps=1)
    spec = qat.write_artifact(trained.module, trained.recipe, tmp_path / "artifact",
                              trained.example.args)
    loaded = load_model(spec)
    assert list(loaded.example_inputs) == ["input_0"]
    assert not isinstance(loaded.module.model, CalledAsInTraining)


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_hasten_infer_measures_the_artifact(tmp_path, only_candidates, kind):
    """The command line in this process, so that only_candidates keeps the study short."""
    from hasten.cli import app

    only_candidates(BASE, "torch/eager/bf16-autocast")
    trained = _train(tmp_path, kind)
    spec = qat.write_artifact(trained.module, trained.recipe, tmp_path / "artifact",
                              trained.example)
    result = CliRunner().invoke(app, ["infer", "--model", spec, "--quick", "--batch-sizes", "1",
                                      "--out", str(tmp_path / "runs"), "--json", "--no-report"])
    assert result.exit_code == 0, result.output
    study = json.loads(result.stdout)
    assert study["finished"] is True
    rows = {r["candidate"]: r for r in study["candidates"]}
    assert rows[BASE]["status"] == "ok", rows[BASE]


def test_an_artifact_whose_recipe_is_gone_is_one_error_line(tmp_path):
    trained = _train(tmp_path, "mlp", steps=1)
    spec = qat.write_artifact(trained.module, trained.recipe, tmp_path / "artifact",
                              trained.example)
    trained.recipe.unlink()
    proc = hasten("infer", "--model", spec, "--quick", "--out", str(tmp_path / "runs"))
    assert "No recipe file at" in _one_error_line(proc)

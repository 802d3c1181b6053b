"""QAT: torchao fake quantization trains, converts to real int8, and the written `py:` artifact
loads in `hasten infer` with the int8 model's outputs."""

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
from hasten.models import load_model
from hasten.train import qat
from hasten.train.recipe import load_recipe

# Two Gaussian blobs, one per class: learnable in a few steps. Fed flat to the MLP and as
# 1x4x4 images to the CNN, whose convolution stays float (torchao's QAT covers linears only).
BLOBS = textwrap.dedent(
    """
    import torch


    def train_data():
        g = torch.Generator().manual_seed(0)
        x = torch.cat([torch.randn(64, 16, generator=g) + 1, torch.randn(64, 16, generator=g) - 1])
        y = torch.cat([torch.zeros(64, dtype=torch.long), torch.ones(64, dtype=torch.long)])
        return torch.utils.data.TensorDataset(x.reshape(SHAPE), y)


    def optimizer(params):
        return torch.optim.AdamW(params, lr=1e-2)


    def loss(model, batch):
        x, y = batch
        return torch.nn.functional.cross_entropy(model(x), y)
    """
)
MODELS = {
    "mlp": """
SHAPE = (-1, 16)


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
""",
    "cnn": """
SHAPE = (-1, 1, 4, 4)


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(64, 2))
""",
}
BASE = "torch/eager/fp32"


@dataclass
class Trained:
    """A recipe's model after a few QAT steps, with the losses and its first call's inputs."""

    recipe: Path
    module: torch.nn.Module
    losses: list[float]
    example_args: tuple[torch.Tensor, ...]


def _train(tmp_path: Path, kind: str, steps: int = 8) -> Trained:
    """Prepare the recipe's model and train it as the runner does, capturing its first inputs."""
    path = tmp_path / f"{kind}_recipe.py"
    path.write_text(BLOBS + MODELS[kind])
    recipe = load_recipe(path)
    module = qat.prepare(recipe.build_model())
    optimizer = recipe.build_optimizer(module)
    captured = []
    hook = module.register_forward_pre_hook(lambda _, args: captured.append(args) or None)
    losses = []
    for batch in recipe.batches(16, steps):
        optimizer.zero_grad()
        value = recipe.compute_loss(module, batch)
        value.backward()
        optimizer.step()
        losses.append(value.item())
    hook.remove()
    return Trained(path, module, losses, captured[0])


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_qat_trains_and_its_artifact_is_the_converted_int8_model(tmp_path, kind):
    trained = _train(tmp_path, kind)
    assert sum(trained.losses[-3:]) < 0.5 * sum(trained.losses[:3]), trained.losses
    module, args = trained.module.eval(), trained.example_args
    with torch.no_grad():
        fake_quantized = module(*args)
    spec = qat.write_artifact(module, trained.recipe, tmp_path / "artifact", args)
    assert spec == f"py:{tmp_path / 'artifact' / 'model.py'}:build"
    with torch.no_grad():
        converted = qat.convert(module)(*args)
        loaded = load_model(spec)
        from_artifact = loaded.module(*loaded.example_inputs.values())
    torch.testing.assert_close(from_artifact, converted, rtol=0, atol=1e-6)
    torch.testing.assert_close(converted, fake_quantized, rtol=0, atol=1e-4)
    weights = {type(m.weight).__name__ for m in loaded.module.modules()
               if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)}
    assert weights == ({"Int8Tensor"} if kind == "mlp" else {"Int8Tensor", "Parameter"})


def test_the_artifact_holds_plain_weights_under_the_recipe_models_keys(tmp_path):
    trained = _train(tmp_path, "mlp")
    folder = tmp_path / "artifact"
    qat.write_artifact(trained.module, trained.recipe, folder, trained.example_args)
    weights = torch.load(folder / "weights.pt", weights_only=True)
    fresh = load_recipe(trained.recipe).build_model().state_dict()
    assert weights.keys() == fresh.keys()
    torch.testing.assert_close(weights, trained.module.state_dict())
    examples = torch.load(folder / "example_inputs.pt", weights_only=True)
    torch.testing.assert_close(examples, trained.example_args)
    assert "runs the training recipe's code" in (folder / "model.py").read_text()


def test_a_model_without_linear_layers_is_refused():
    convolutional = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    with pytest.raises(HastenError, match=r"needs an nn\.Linear layer .* not convolutions"):
        qat.prepare(convolutional)


def test_inputs_that_are_not_positional_tensors_are_refused(tmp_path):
    trained = _train(tmp_path, "mlp", steps=1)
    with pytest.raises(HastenError, match="positional tensors"):
        qat.write_artifact(trained.module, trained.recipe, tmp_path / "artifact", ())


def test_hasten_infer_measures_the_artifact(tmp_path, only_candidates):
    """The command line in this process, so that only_candidates keeps the study short."""
    from hasten.cli import app

    only_candidates(BASE, "torch/eager/bf16-autocast")
    trained = _train(tmp_path, "cnn")
    spec = qat.write_artifact(trained.module, trained.recipe, tmp_path / "artifact",
                              trained.example_args)
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
                              trained.example_args)
    trained.recipe.unlink()
    proc = hasten("infer", "--model", spec, "--quick", "--out", str(tmp_path / "runs"))
    assert "No recipe file at" in _one_error_line(proc)

"""The qat-int8 switch as the runner uses it (tests/train/test_qat.py covers hasten.train.qat
itself): the Trainer's model is fake-quantized before its optimizer is built, so the optimizer
trains those parameters; the first training call is kept; after training, `trained` writes the
artifact from the float weights and then converts the model in place, so that what the study
evaluates next is the int8 model `hasten infer` loads; a model without nn.Linear is refused in
one sentence; the candidate trains to the end; the line it recommends prepares a model."""

from __future__ import annotations

import torch
from torch import nn

from hasten.models import load_model
from hasten.train.candidates import TrainCandidate
from hasten.train.runner import Trainer
from hasten.train.settings import TrainSettings
from hasten.train.switches import REGISTRY

SWITCH = REGISTRY["qat-int8"]

RECIPE = '''
import torch
from torch import nn


def model():
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))


def train_data():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(32, 16, generator=g) + 1, torch.randn(32, 16, generator=g) - 1])
    y = torch.cat([torch.zeros(32, dtype=torch.long), torch.ones(32, dtype=torch.long)])
    return torch.utils.data.TensorDataset(x, y)


def loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)
'''


def settings(recipe) -> TrainSettings:
    return TrainSettings(device="cpu", max_drop=0.01, quick=False,
                         threads=torch.get_num_threads(), point_s=1.0, baseline="32-true",
                         model={}, recipe=str(recipe), steps=4, batch_size=8, eval=False,
                         devices=1, memory_budget_mb=1.0)


def _weight_types(module: nn.Module) -> set[str]:
    return {type(m.weight).__name__ for m in module.modules() if isinstance(m, nn.Linear)}


def test_the_trainer_trains_the_fake_quantized_model_and_ends_with_the_int8_one(tmp_path):
    from torchao.quantization.qat import FakeQuantizedLinear

    recipe = tmp_path / "mlp.py"
    recipe.write_text(RECIPE)
    trainer = Trainer(settings(recipe), TrainCandidate("32-true", ("qat-int8",)), 8)
    linears = [m for m in trainer.raw.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 2 and all(isinstance(m, FakeQuantizedLinear) for m in linears)
    trained = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert [id(p) for p in trained] == [id(p) for p in trainer.raw.parameters()]
    before = [p.detach().clone() for p in trainer.raw.parameters()]
    for _ in range(4):
        trainer.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, trainer.raw.parameters(),
                                                     strict=True))
    # The first training call, one micro-batch of inputs.
    assert [tuple(t.shape) for t in trainer.example_args.args] == [(8, 16)]

    outcome = SWITCH.trained(trainer.raw, trainer.example_args, str(recipe), tmp_path / "art")
    assert outcome == {"infer_spec": f"py:{tmp_path / 'art' / 'model.py'}:build"}
    # The artifact holds the float weights; the model itself is now int8.
    saved = torch.load(tmp_path / "art" / "weights.pt", weights_only=True)
    assert {t.dtype for t in saved.values()} == {torch.float32}
    assert _weight_types(trainer.raw) == {"Int8Tensor"}
    loaded = load_model(outcome["infer_spec"])
    assert _weight_types(loaded.module) == {"Int8Tensor"}
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        evaluated = trainer.module.eval()(x)  # what the runner's evaluate() calls
        measured = loaded.module(x)
    torch.testing.assert_close(measured, evaluated, rtol=0, atol=1e-6)


def test_a_model_without_linear_layers_is_refused():
    convolutional = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1))
    facts = SWITCH.facts(convolutional, None, None)
    assert facts == {"has_linear": False}
    assert SWITCH.unavailable(facts, None) == (
        "quantization-aware training covers nn.Linear layers, and the model has none")
    mlp = nn.Sequential(nn.Linear(4, 2))
    assert SWITCH.unavailable(SWITCH.facts(mlp, None, None), None) is None


def test_it_trains_to_the_end_and_needs_the_first_call():
    candidate = TrainCandidate("32-true", ("qat-int8",))
    assert candidate.converges and SWITCH.needs_example
    assert SWITCH.group is None and SWITCH.quick_bases == ("32-true",)


def test_the_recommended_line_prepares_the_model():
    from torchao.quantization.qat import FakeQuantizedLinear

    [line] = SWITCH.code("cpu")
    namespace = {"model": nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))}
    exec(line, namespace)
    assert all(isinstance(m, FakeQuantizedLinear) for m in namespace["model"]
               if isinstance(m, nn.Linear))
    assert "qat.convert after training" in line

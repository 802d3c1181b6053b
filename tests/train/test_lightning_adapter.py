"""hasten.train.lightning: a LightningModule's methods become a recipe's functions. Checked on a
duck-typed module (a plain nn.Module with Lightning's methods) and, where Lightning is
installed, on a real LightningModule: the loss is training_step's, every form of
configure_optimizers gives its optimizer, evaluation is what validation_step logs, collate
functions are kept, and a step runs whole under the precision Fabric sets."""

from __future__ import annotations

import textwrap

import pytest
import torch
from lightning_fabric import Fabric
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hasten.errors import HastenError
from hasten.train import families
from hasten.train.lightning import Collated, recipe_from
from hasten.train.recipe import load_recipe

X = torch.randn(64, 6, generator=torch.Generator().manual_seed(0))
Y = (X.sum(1) > 0).long()


class Steps:
    """Lightning's protocol: steps, optimizers and loaders, logging with self.log."""

    def build(self, optimizers: str) -> None:
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
        self.optimizers_form = optimizers
        self.dtypes: list[torch.dtype] = []

    def forward(self, x):
        out = self.net(x)
        self.dtypes.append(out.dtype)
        return out

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_accuracy", (logits.argmax(1) == y).float().mean())
        self.log_dict({"val_loss": nn.functional.cross_entropy(logits, y)})

    def configure_optimizers(self):
        sgd = torch.optim.SGD(self.parameters(), lr=0.1)
        schedule = torch.optim.lr_scheduler.StepLR(sgd, 1)
        return {"optimizer": sgd, "list": [sgd], "lists": ([sgd], [schedule]),
                "dict": {"optimizer": sgd, "lr_scheduler": schedule},
                "dicts": [{"optimizer": sgd}], "two": [sgd, torch.optim.SGD(self.parameters())],
                "none": None, "other": torch.optim.SGD(nn.Linear(1, 1).parameters()),
                }[self.optimizers_form]

    def train_dataloader(self):
        return DataLoader(TensorDataset(X, Y), batch_size=8, shuffle=True)

    def val_dataloader(self):
        return DataLoader(TensorDataset(X[:16], Y[:16]), batch_size=8)


class Classifier(Steps, nn.Module):
    """The protocol on a plain module (duck-typed: no Lightning)."""

    def __init__(self, optimizers: str = "optimizer") -> None:
        super().__init__()
        self.build(optimizers)

    def log(self, name, value, **kwargs) -> None:  # as Lightning's, without a Trainer
        pass

    def log_dict(self, values, **kwargs) -> None:
        pass


def lightning_classifier() -> type:
    """The same steps on a real LightningModule."""
    pl = pytest.importorskip("lightning.pytorch")

    class LitClassifier(Steps, pl.LightningModule):
        def __init__(self, optimizers: str = "optimizer") -> None:
            super().__init__()
            self.build(optimizers)

    return LitClassifier


@pytest.fixture(params=["duck-typed", "lightning"])
def module_class(request) -> type:
    return Classifier if request.param == "duck-typed" else lightning_classifier()


def test_the_loss_is_training_steps(module_class):
    recipe = recipe_from(module_class)
    torch.manual_seed(0)
    model = recipe.model()
    torch.manual_seed(0)
    own = module_class()
    batch = (X[:8], Y[:8])
    assert torch.equal(recipe.loss(model, batch), own.training_step(batch, 0))
    # The model is the module's own forward too, and its state keeps the module's keys.
    assert torch.equal(model(X[:8]), own(X[:8]))
    assert {k.removeprefix("module.") for k in model.state_dict()} == set(own.state_dict())


def test_a_training_step_trains(module_class):
    recipe = recipe_from(module_class)
    torch.manual_seed(0)
    model = recipe.model()
    optimizer = recipe.optimizer(model.parameters())
    batch = (X, Y)
    before = recipe.loss(model, batch).item()
    for _ in range(20):
        optimizer.zero_grad()
        recipe.loss(model, batch).backward()
        optimizer.step()
    assert recipe.loss(model, batch).item() < before


@pytest.mark.parametrize("form", ["optimizer", "list", "lists", "dict", "dicts"])
def test_every_form_of_configure_optimizers_gives_its_optimizer(form):
    recipe = recipe_from(lambda: Classifier(form))
    model = recipe.model()
    optimizer = recipe.optimizer(model.parameters())
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["lr"] == 0.1
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {
        id(p) for p in model.parameters()}


@pytest.mark.parametrize("form, message", [
    ("two", "returned 2 optimizers; hasten trains with one"),
    ("none", "must return an optimizer"),
    ("other", "parameters that are not the module's own"),
])
def test_optimizers_hasten_cannot_train_with_are_refused(form, message):
    recipe = recipe_from(lambda: Classifier(form))
    model = recipe.model()
    with pytest.raises(HastenError, match=message):
        recipe.optimizer(model.parameters())


def test_evaluation_is_what_validation_step_logs(module_class):
    recipe = recipe_from(module_class)
    model = recipe.model().eval()
    assert len(recipe.eval_data()) == 16
    batch = (X[:8], Y[:8])
    with torch.no_grad():
        metrics = recipe.evaluate(model, batch)
        logits = model(X[:8])
    assert list(metrics) == ["val_accuracy", "val_loss"]
    assert metrics["val_accuracy"] == pytest.approx((logits.argmax(1) == Y[:8]).float().mean())
    assert metrics["val_loss"] == pytest.approx(nn.functional.cross_entropy(logits, Y[:8]))
    # Training logs are not kept.
    recipe.loss(model, batch)
    assert model.logged is None


def test_validation_step_may_return_its_metrics_instead():
    class ReturnsDict(Classifier):
        def validation_step(self, batch, batch_idx):
            x, y = batch
            predicted = self(x).argmax(1)
            return {"val_accuracy": (predicted == y).float().mean(), "predicted": predicted}

    class ReturnsLoss(Classifier):
        def validation_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

    batch = (X[:8], Y[:8])
    for module_class, keys in ((ReturnsDict, ["val_accuracy"]), (ReturnsLoss, ["val_loss"])):
        recipe = recipe_from(module_class)
        assert list(recipe.evaluate(recipe.model().eval(), batch)) == keys


def test_an_instance_is_copied_for_each_model():
    template = Classifier()
    recipe = recipe_from(template)
    first, second = recipe.model(), recipe.model()
    assert first.module is not template and first.module is not second.module
    assert torch.equal(first.module.net[0].weight, template.net[0].weight)


def test_without_validation_there_is_no_evaluation():
    class NoValidation(Classifier):
        validation_step = None

    recipe = recipe_from(NoValidation)
    assert recipe.eval_data is None and recipe.evaluate is None


def test_a_data_module_and_its_collate_function_are_kept():
    calls = []

    def collate(samples):
        calls.append(len(samples))
        xs, ys = zip(*samples, strict=True)
        return {"x": torch.stack(xs) * 2, "y": torch.stack(ys), "names": [str(len(xs))] * len(xs)}

    class Data:
        def setup(self, stage):
            calls.append(stage)
            self.dataset = TensorDataset(X, Y)

        def train_dataloader(self):
            return DataLoader(self.dataset, batch_size=4, collate_fn=collate)

    class DictBatches(Classifier):
        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self(batch["x"]), batch["y"])

    recipe = recipe_from(DictBatches, Data)
    dataset = recipe.train_data()
    assert isinstance(dataset, Collated) and calls == ["fit"]
    # hasten's own loader (default collate, its batch size) gets the user's collated batches.
    batch = next(iter(DataLoader(dataset, batch_size=5)))
    assert calls[-1] == 5
    assert torch.equal(batch["x"], X[:5] * 2) and torch.equal(batch["y"], Y[:5])
    assert batch["names"] == ["5"] * 5
    assert recipe.loss(recipe.model(), batch).dim() == 0
    assert recipe.eval_data is None  # the data module has no val_dataloader


def test_the_whole_step_runs_under_fabrics_precision():
    recipe = recipe_from(Classifier)
    fabric = Fabric(accelerator="cpu", devices=1, precision="bf16-mixed")
    model = recipe.model()
    wrapped, optimizer = fabric.setup(model, recipe.optimizer(model.parameters()))
    loss = recipe.loss(wrapped, (X[:8], Y[:8]))
    assert model.module.dtypes == [torch.bfloat16]  # the forward inside training_step
    fabric.backward(loss)
    optimizer.step()
    wrapped.eval()
    with torch.no_grad():
        assert set(recipe.evaluate(wrapped, (X[:8], Y[:8]))) == {"val_accuracy", "val_loss"}


def test_pre_hooks_see_the_modules_own_call():
    """What hasten keeps as an artifact's example inputs: `self(x)` inside the step."""
    recipe = recipe_from(Classifier)
    model = recipe.model()
    seen = []
    handle = model.register_forward_pre_hook(lambda m, args: seen.append((m, args)))
    recipe.loss(model, (X[:8], Y[:8]))
    handle.remove()
    recipe.loss(model, (X[:8], Y[:8]))
    assert len(seen) == 1 and seen[0][0] is model and torch.equal(seen[0][1][0], X[:8])


def test_manual_optimization_is_refused():
    class Manual(Classifier):
        automatic_optimization = False

    with pytest.raises(HastenError, match="automatic_optimization = False"):
        recipe_from(Manual).model()


def test_a_recipe_file_of_two_lines_passes_hastens_check(tmp_path):
    (tmp_path / "adapter_user_module.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn
        from torch.utils.data import DataLoader, TensorDataset

        class Module(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = nn.Linear(4, 3)

            def forward(self, x):
                return self.net(x)

            def training_step(self, batch, batch_idx):
                x, y = batch
                return nn.functional.cross_entropy(self(x), y)

            def validation_step(self, batch, batch_idx):
                x, y = batch
                self.log("val_accuracy", (self(x).argmax(1) == y).float().mean())

            def configure_optimizers(self):
                return torch.optim.AdamW(self.parameters(), lr=1e-2)

            def _loader(self):
                g = torch.Generator().manual_seed(0)
                return DataLoader(TensorDataset(torch.randn(32, 4, generator=g),
                                                torch.randint(0, 3, (32,), generator=g)))

            train_dataloader = val_dataloader = _loader
    """))
    recipe_file = tmp_path / "recipe.py"
    recipe_file.write_text("from adapter_user_module import Module\n"
                           "from hasten.train.lightning import recipe_from\n"
                           "model, train_data, loss, optimizer, eval_data, evaluate = "
                           "recipe_from(Module)\n")
    loaded = load_recipe(recipe_file)
    facts, _ = families.TORCH.check(loaded, batch_size=8, evaluate=True)
    assert facts["train_size"] == 32 and facts["optimizer"] == "AdamW"

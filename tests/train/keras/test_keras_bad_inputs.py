"""Bad Keras recipes and settings: one plain sentence, exit code 2, no traceback."""

from __future__ import annotations

import textwrap

import pytest

pytest.importorskip("keras")

HEAD = "import keras\nimport numpy as np\n\n"
DATA = textwrap.dedent(
    """
    def train_data():
        return np.zeros((8, {features}), "float32"), np.zeros(8, "int64")


    def loss():
        return {loss}
    """
)
MODEL = textwrap.dedent(
    """
    def model():
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    """
)


def _recipe(folder, name: str, body: str) -> str:
    path = folder / f"{name}.py"
    path.write_text(HEAD + body)
    return str(path)


def _cases(folder) -> list[tuple[list[str], str]]:
    data = DATA.format(features=4, loss='"sparse_categorical_crossentropy"')
    good = _recipe(folder, "good", MODEL + data)
    runs = ["--out", str(folder / "runs"), "--steps", "2", "--batch-size", "4"]
    return [
        (["train", _recipe(folder, "no_model", data), *runs], "has no model()"),
        (["train", _recipe(folder, "not_a_model", "def model():\n    return 42\n" + data),
          *runs], "model() must return a torch.nn.Module or a keras.Model, not int"),
        (["train", _recipe(folder, "bad_loss", MODEL + DATA.format(
            features=4, loss='"no_such_loss"')), *runs], "failed"),
        (["train", _recipe(folder, "wrong_shape", MODEL + DATA.format(
            features=5, loss='"sparse_categorical_crossentropy"')), *runs],
         "one training step on 2 samples of train_data() failed"),
        (["train", str(good), "--keras-backend", "jax", *runs],
         "--keras-backend must be tensorflow or torch"),
        (["train", str(good), "--devices", "2", *runs], "one process on the CPU"),
        (["numerics", "audit", str(good)], "is a Keras recipe"),
        (["train", "--demo", "nope"], "--demo takes digits, text, keras-digits"),
    ]


def _invoke(args: list[str]):
    from typer.testing import CliRunner

    from hasten.cli import app

    return CliRunner().invoke(app, args)


def test_each_bad_input_is_one_sentence_and_exit_2(tmp_path):
    for args, says in _cases(tmp_path):
        result = _invoke(args)
        message = result.output.strip()
        assert result.exit_code == 2, (args, message)
        assert says in message, (args, message)
        assert "Traceback" not in message and len(message.splitlines()) == 1, message


def test_tensorflow_missing_is_said(tmp_path, monkeypatch):
    from hasten.train import families

    monkeypatch.setattr(families, "tensorflow_installed", lambda: False)
    recipe = _recipe(tmp_path, "good", MODEL + DATA.format(
        features=4, loss='"sparse_categorical_crossentropy"'))
    result = _invoke(["train", recipe, "--keras-backend", "tensorflow",
                      "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "needs TensorFlow, which is not installed" in result.output

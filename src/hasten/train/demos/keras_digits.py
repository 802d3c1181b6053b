"""Demo Keras recipe: a small Keras CNN trained from scratch on scikit-learn's handwritten
digits, the same data and 70/30 split as the PyTorch digits demo (digits.py)."""

from __future__ import annotations

import functools

import keras
import numpy as np

SEED = 0


def model() -> keras.Model:
    """Two 3x3 convolutions (16, 32 filters), pooling and two dense layers, the PyTorch demo's
    network in Keras; the last layer follows the dtype policy, as most Keras models' do."""
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ], name="digits_cnn")


@functools.cache
def _split() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The digits as (N, 8, 8, 1) floats in [0, 1] and int labels, split 70/30 once."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = (digits.images / 16).astype("float32")[..., None]  # values 0..16
    train_x, eval_x, train_y, eval_y = train_test_split(
        pixels, digits.target, test_size=0.3, random_state=SEED, stratify=digits.target)
    return (train_x, train_y), (eval_x, eval_y)


def train_data() -> tuple[np.ndarray, np.ndarray]:
    """The 70% of the digits used for training (1,257 images)."""
    return _split()[0]


def eval_data() -> tuple[np.ndarray, np.ndarray]:
    """The held-out 30% (540 images), never seen in training."""
    return _split()[1]


def loss() -> keras.losses.Loss:
    """Cross-entropy of the softmax outputs against the integer labels."""
    return keras.losses.SparseCategoricalCrossentropy()


def optimizer() -> keras.optimizers.Optimizer:
    """Adam at 3e-3: a CNN this small trains in a few epochs from scratch."""
    return keras.optimizers.Adam(3e-3)


def metrics() -> list:
    """Accuracy on the held-out digits judges every candidate against float32's."""
    return ["accuracy"]

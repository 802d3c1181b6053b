"""A `hasten train` recipe for a Keras model: a small CNN built with the functional API on
scikit-learn's handwritten digits, written as the Keras mixed-precision guide advises (the
softmax kept in float32, so that the probabilities and the loss are computed in full precision
under a mixed policy).

    hasten train examples/keras_digits/recipe.py --batch-size 64 --steps 150

A Keras recipe returns arrays, a keras.Model, the loss (here by name) and optionally the
optimizer and metrics; hasten compiles and fits the model under each dtype policy it measures.
The pixels go in raw (0..16); the model rescales them itself. The data are the 1,797 digits,
split 70/30 with a fixed stratified seed.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

# Keras compiles the model with this loss: a recipe may give a name or a function returning one.
loss = "sparse_categorical_crossentropy"


def model() -> keras.Model:
    """Rescaling, two convolution blocks with batch normalization, dropout and a dense head."""
    pixels = keras.Input((8, 8, 1), name="pixels")
    x = keras.layers.Rescaling(1 / 16)(pixels)
    for filters in (16, 32):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.2)(x)
    x = keras.layers.Dense(10)(x)
    probabilities = keras.layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(pixels, probabilities, name="digits_functional")


@functools.cache
def _split() -> list[np.ndarray]:
    digits = load_digits()
    return train_test_split(digits.images[..., None].astype("float32"), digits.target,
                            test_size=0.3, random_state=0, stratify=digits.target)


def train_data() -> tuple[np.ndarray, np.ndarray]:
    """(1257, 8, 8, 1) pixels and their digits."""
    train_x, _, train_y, _ = _split()
    return train_x, train_y


def eval_data() -> tuple[np.ndarray, np.ndarray]:
    """The held-out 540 digits."""
    _, held_x, _, held_y = _split()
    return held_x, held_y


def optimizer() -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(2e-3)


def metrics() -> list:
    """Held-out accuracy judges every dtype policy against float32's."""
    return ["accuracy"]

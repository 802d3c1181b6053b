"""scikit-learn's handwritten digits (1,797 real 8x8 scans) as 8-bit pixels, split 70/30 with a
fixed stratified seed: what train.py and recipe.py train on and hold out."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 0


def split() -> list[np.ndarray]:
    """train_x, held_x, train_y, held_y: (N, 8, 8) uint8 pixels and their digits."""
    digits = load_digits()
    # The digits hold 0..16; as 8-bit pixels they are what PNG files store exactly.
    pixels = np.round(digits.images * 255 / 16).astype(np.uint8)
    return train_test_split(pixels, digits.target, test_size=0.3, random_state=SEED,
                            stratify=digits.target)

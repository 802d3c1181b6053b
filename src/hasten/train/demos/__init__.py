"""The recipes `hasten train` runs when it is given none: real labelled data that ships offline.

- digits: a small CNN trained from scratch on scikit-learn's 8x8 handwritten digits (10 classes).
- text: the bundled MiniLM encoder fine-tuned to tell the topic of a sentence of Python's own
  documentation (4 balanced classes).

- keras-digits (KERAS_DEMOS, with `pip install 'hasten[keras]'` or Keras on the torch backend):
  the same digits and split, a small Keras CNN.

Each is a plain recipe file (see hasten.train.recipe); load one with `load_recipe(DEMOS[name])`.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent

DEMOS: dict[str, Path] = {"digits": _HERE / "digits.py", "text": _HERE / "text.py"}
KERAS_DEMOS: dict[str, Path] = {"keras-digits": _HERE / "keras_digits.py"}

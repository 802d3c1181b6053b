"""Keras 3 models as one more kind of training study: the recipe loader (recipe.py), the
candidates (precision policies and switches, candidates.py) and the trial process (runner.py).
The study itself, its store rows, read-back and reports are hasten.train's; only runner.py
imports Keras, in its own process, with the study's backend."""

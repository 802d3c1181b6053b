"""hasten: make PyTorch models train and infer faster, with proof."""

from hasten.api import compare, optimize_inference
from hasten.errors import HastenError
from hasten.study import Study

__all__ = ["HastenError", "Study", "compare", "optimize_inference"]

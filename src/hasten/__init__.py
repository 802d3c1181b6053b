"""hasten: make PyTorch models train and infer faster, with proof."""

from hasten.api import compare, open_study, optimize_inference, optimize_training, write_report
from hasten.errors import HastenError
from hasten.infer.study import Study
from hasten.numerics.audit import audit_model, audit_recipe
from hasten.train.study import TrainStudy

__all__ = [
    "HastenError", "Study", "TrainStudy", "audit_model", "audit_recipe", "compare",
    "open_study", "optimize_inference", "optimize_training", "write_report",
]

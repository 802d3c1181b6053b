"""hasten: make PyTorch models train and infer faster, with proof.

The API is imported on first use, so that commands that need no torch (`hasten lint`) start
without importing it."""

import importlib

from hasten.errors import HastenError

_LAZY = {
    "compare": "hasten.api", "open_study": "hasten.api", "optimize_inference": "hasten.api",
    "optimize_training": "hasten.api", "write_report": "hasten.api",
    "Study": "hasten.infer.study", "audit_model": "hasten.numerics.audit",
    "audit_recipe": "hasten.numerics.audit", "TrainStudy": "hasten.train.study",
}

__all__ = ["HastenError", *sorted(_LAZY)]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hasten' has no attribute {name!r}")

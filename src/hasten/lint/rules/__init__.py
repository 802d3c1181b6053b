"""The rules, one module per family; importing this package registers them all."""

from hasten.lint.rules import data, device, inference, model, precision, safety  # noqa: F401

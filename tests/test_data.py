"""The demo corpus: the same sentences in the same order whatever the process imported first."""

from __future__ import annotations

import inspect
import logging

from hasten import data


def test_the_corpus_leaves_out_what_other_packages_added_to_the_standard_library(monkeypatch):
    def added(self) -> None:
        """A method another package added to a standard-library class, as transformers does."""

    added.__module__ = "elsewhere.logging"
    before = data.demo_corpus()
    monkeypatch.setattr(logging.Logger, "added", added, raising=False)
    assert data.demo_corpus() == before
    docs = data.docstrings(logging, inspect.isclass)
    assert logging.Logger.__doc__ in docs and added.__doc__ not in docs

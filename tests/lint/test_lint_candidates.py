"""Every rule names candidates that really are in hasten's menus, and the recipe reader asks
for the functions hasten.train.recipe requires."""

from __future__ import annotations

from hasten.infer.menu import CANDIDATES
from hasten.lint import REGISTRY
from hasten.lint.recipe import REQUIRED
from hasten.train import recipe
from hasten.train.candidates import menu
from hasten.train.keras import candidates as keras_candidates


def test_named_candidates_exist():
    train = {c.name for c, _ in menu()} | {c.name for c, _ in keras_candidates.menu()}
    infer = {c.name for c in CANDIDATES}
    for rule in REGISTRY.values():
        assert rule.train is None or rule.train in train, rule.code
        assert rule.infer is None or rule.infer in infer, rule.code


def test_only_safety_rules_name_no_candidate():
    assert {r.code for r in REGISTRY.values() if not (r.train or r.infer)} == {"HST112", "HST117"}


def test_recipe_functions_match():
    assert REQUIRED == recipe.REQUIRED

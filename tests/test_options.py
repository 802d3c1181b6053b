"""Each option declared once: the command line's flags, the API's signature and its check of
keywords all come from hasten.options, and stored settings under an old name still read."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from typer.testing import CliRunner

import hasten
from hasten.cli import app
from hasten.config import Settings
from hasten.errors import HastenError
from hasten.options import InferOptions, TrainOptions, flag, with_flags
from hasten.train.settings import TrainSettings


def _flags_of(command: str) -> dict[str, list[str]]:
    """The options of a command as click declares them: name -> its flags."""
    import typer

    group = typer.main.get_command(app)
    return {p.name: [*p.opts, *p.secondary_opts] for p in group.commands[command].params}


@pytest.mark.parametrize(("command", "options"), [("infer", InferOptions),
                                                  ("train", TrainOptions)])
def test_every_declared_option_is_a_flag_of_its_command(command, options):
    flags = _flags_of(command)
    for f in dataclasses.fields(options):
        how = f.metadata["flag"]
        if not how.cli:
            assert f.name not in flags
            continue
        assert set(flag(f.name).split("/")) <= set(flags[f.name])
        if how.short:
            assert how.short in flags[f.name]


def test_the_api_shows_the_options_and_refuses_one_it_does_not_take():
    params = inspect.signature(hasten.optimize_inference).parameters
    assert params["budget_s"].default is None and params["max_drop"].default == 0.01
    assert "point_s" in params and "steps" not in params
    assert inspect.signature(hasten.optimize_training).parameters["steps"].default == 100
    with pytest.raises(HastenError, match=r"^`optimize_inference` takes no option "
                                          r"`time_budget_s`; help\(hasten.api"):
        hasten.optimize_inference("demo", time_budget_s=60)


def test_a_budget_is_the_same_word_on_the_command_line_and_in_the_api():
    assert flag("budget_s") == "--budget" and flag("memory_budget_mb") == "--memory-budget"
    assert with_flags("`budget_s` must be more than 0 s") == "--budget must be more than 0 s"
    with pytest.raises(HastenError, match=r"^`budget_s` must be more than 0 s, not -1"):
        InferOptions(budget_s=-1).check_budget()
    # An option that only the API takes keeps its name.
    assert with_flags("`point_s` and `fresh`") == "`point_s` and --fresh"


def test_flags_given_replace_a_demos_settings_and_others_keep_them(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr("hasten.api.optimize_training",
                        lambda path, **options: seen.append(options) or _Empty())
    result = CliRunner().invoke(app, ["train", "--demo", "digits", "--steps", "7", "-b", "90s",
                                      "-o", str(tmp_path), "--no-report"])
    assert result.exit_code == 0, result.output
    given = seen[0]
    assert given["steps"] == 7 and given["budget_s"] == 90.0 and given["batch_size"] == 64
    assert given["name"] == "demo-digits" and given["out"] == tmp_path
    # Flags the user did not give are not passed at all: their declared defaults stand.
    assert "max_drop" not in given and "quick" not in given


def test_a_flag_that_does_not_read_is_one_sentence():
    result = CliRunner().invoke(app, ["infer", "--batch-sizes", "1,x"])
    assert result.exit_code == 2
    assert "--batch-sizes takes comma-separated integers, such as 1,8,32." in result.output


def test_settings_stored_under_their_old_name_are_read_under_the_new_one():
    settings = TrainSettings(device="cpu", max_drop=0.01, quick=False, threads=1, point_s=1.5,
                             baseline="32-true", model={}, recipe="r.py", steps=10,
                             batch_size=8, eval=False, devices=1, memory_budget_mb=100.0)
    stored = settings.to_dict()
    old = {("budget_s" if k == "point_s" else k): v for k, v in stored.items()}
    assert TrainSettings.from_dict(old) == settings
    # A study resumed with the same settings is not refused for the name it stored them under.
    assert Settings.upgrade(old) == stored


class _Empty(list):
    """What a stubbed study call returns: no studies to show."""

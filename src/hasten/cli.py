"""The command line: parse, call the library, render. No logic of its own."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hasten.errors import HastenError
from hasten.options import InferOptions, StudyOptions, TrainOptions, flag, with_flags

app = typer.Typer(add_completion=False, no_args_is_help=False, rich_markup_mode=None,
                  help="Make PyTorch models train and infer faster, with proof.")
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"hasten {version('hasten')}")
        raise typer.Exit()


@app.callback()
def _root(show_version: bool = typer.Option(False, "--version", callback=_version,
                                            is_eager=True,
                                            help="Show hasten's version and exit.")) -> None:
    """Make PyTorch models train and infer faster, with proof."""


def _numbers(text: str | None, flag: str, kind: type = int) -> list | None:
    """A flag's comma-separated integers (or floats), or None when it was not given."""
    if text is None:
        return None
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        what = "integers, such as 1,8,32" if kind is int else "numbers, such as 0.5,0.5,0.5"
        raise HastenError(f"{flag} takes comma-separated {what}.") from None


def _wide_console() -> Console:
    """A console for tables: the terminal's width, or wide enough when output is piped."""
    return Console() if sys.stdout.isatty() else Console(width=200)


def _show(result: object, as_json: bool, render) -> None:
    """Print a result as JSON, or rendered for the terminal."""
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        render(result, _wide_console())


def _show_study(study, as_json: bool, render, reported: bool) -> None:
    """A finished study as JSON, or rendered for the terminal with where its report is."""
    if as_json:
        print(json.dumps(study.to_dict(), indent=2))
        return
    render(study, _wide_console())
    if reported:
        print(f"Report: {study.folder / 'report.html'}")


@contextlib.contextmanager
def _progress_bar() -> Iterator[tuple[Callable[[str, int, int], None], Callable[[str], None]]]:
    """A progress callback (what, done, total), drawn as a bar on stderr when it is a
    terminal, and a log callback that prints one plain line per finished trial to stderr,
    terminal or not (a log file, `| tee`, CI)."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True,
                  disable=not err.is_terminal) as bar:
        task_id = bar.add_task("starting", total=1)

        def progress(what: str, done: int, total: int) -> None:
            bar.update(task_id, description=what, completed=done, total=total)

        def log(line: str) -> None:
            err.print(line, markup=False, highlight=False, soft_wrap=True)

        yield progress, log


def _guard(debug: bool, fn) -> None:
    """Run fn; a HastenError becomes one sentence and exit code 2 (a traceback with --debug).
    Line breaks in it (a library's message it quotes) become spaces, so it stays one line."""
    try:
        fn()
    except HastenError as exc:
        if debug:
            err.print_exception()
        message = with_flags(" ".join(str(exc).split()))
        err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("Interrupted; finished trials are kept and the same command resumes.")
        raise typer.Exit(130) from None


# A command's own flags that follow a study's options in its help.
LAST = ("as_json", "no_report", "debug")


def _flag_type(options: type, name: str, how) -> type:
    """The type the command line reads an option as: text for one it parses itself, else the
    option's own type without None."""
    if how.parse is not None:
        return str
    kinds = [k for k in typing.get_args(typing.get_type_hints(options)[name])
             if k is not type(None)] or [typing.get_type_hints(options)[name]]
    return kinds[0]


def with_options(options: type[StudyOptions]) -> Callable:
    """Give a command a flag for each option of a study, declared in hasten.options, and hand
    it those the user gave, read into their types, as `given`."""
    base = {f.name for f in dataclasses.fields(StudyOptions)}
    # The study's own options first, then those every study has; only those with a flag.
    declared = {f.name: f for f in sorted(dataclasses.fields(options), key=lambda f: f.name in base)
                if f.metadata["flag"].cli}

    def decorate(fn: Callable) -> Callable:
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for p in inspect.signature(fn).parameters.values() if p.name != "given"]
        params, types = [], {}
        for name, f in declared.items():
            how = f.metadata["flag"]
            option = typer.Option(f.default if how.parse is None else None,
                                  *[n for n in (flag(name), how.short) if n], help=how.help,
                                  metavar=how.metavar)
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                            default=option))
            types[name] = _flag_type(options, name, how)
        # The command's own flags that say how to show the result come last.
        first = [p for p in own if p.name not in LAST]
        last = [p for p in own if p.name in LAST]

        @functools.wraps(fn)
        def command(context: typer.Context, **kwargs: Any) -> None:
            raw = {n: kwargs.pop(n) for n in declared}
            # Only what the user gave: a demo's own settings stand where a flag was not given.
            chosen = {n: v for n, v in raw.items()
                      if context.get_parameter_source(n).name != "DEFAULT"}
            given: dict[str, Any] = {}

            def read() -> None:
                for n, v in chosen.items():
                    how = declared[n].metadata["flag"]
                    given[n] = how.parse(v) if how.parse and v is not None else v

            _guard(kwargs.get("debug", False), read)
            fn(given=given, **kwargs)

        context = inspect.Parameter("context", inspect.Parameter.KEYWORD_ONLY,
                                    annotation=typer.Context)
        command.__signature__ = inspect.Signature([context] + first + params + last)
        command.__annotations__ = {**typing.get_type_hints(fn), **types,
                                   "context": typer.Context}
        command.__annotations__.pop("given", None)
        return command

    return decorate


@app.command()
@with_options(InferOptions)
def infer(
    given: dict,
    model: str = typer.Option("demo", "--model", "-m", metavar="SPEC", help="Model spec: demo, "
                              "demo-decoder, hf:DIR or hf:ORG/NAME[@REVISION] (a Hub id), "
                              "py:FILE:FACTORY (runs that file's code), onnx:FILE, pt2:FILE (a "
                              "program saved with torch.export.save, checked before it is "
                              "loaded). A decoder language model (a ...ForCausalLM) gets the "
                              "generation study."),
    demo: str = typer.Option(None, metavar="NAME", help="Run a bundled demo instead of "
                             "--model: minilm (the sentence encoder) or decoder (a small "
                             "Llama-style decoder, trained once on the demo corpus and kept "
                             "in your cache)."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write report.html."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Run the inference study: every candidate measured, checked and ranked."""
    from hasten.api import optimize_inference
    from hasten.generate.study import GenerateStudy
    from hasten.report import generate as generate_view
    from hasten.report.terminal import render

    def go() -> None:
        if demo is not None and demo not in INFER_DEMOS:
            raise HastenError(f"--demo takes {', '.join(INFER_DEMOS)}, not {demo!r}.")
        if demo is not None and model != "demo":
            raise HastenError("Give --model or --demo, not both.")
        with _progress_bar() as (progress, log):
            study = optimize_inference(INFER_DEMOS[demo] if demo else model,
                                       report=not no_report, progress=progress, log=log,
                                       **given)
        for one in study if isinstance(study, list) else [study]:
            view = generate_view.render if isinstance(one, GenerateStudy) else render
            _show_study(one, as_json, view, not no_report)

    _guard(debug, go)


# `hasten infer --demo NAME`: the model spec each bundled demo runs.
INFER_DEMOS = {"minilm": "demo", "decoder": "demo-decoder"}


@app.command()
@with_options(TrainOptions)
def train(
    given: dict,
    recipe: Path = typer.Argument(None, metavar="RECIPE", help="A training recipe file, "
                                  "PyTorch or Keras (runs that file's code); default: the "
                                  "bundled digits CNN and MiniLM text demos."),
    demo: str = typer.Option(None, metavar="NAME", help="Run one bundled demo instead: digits, "
                             "text or keras-digits (needs Keras)."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write report.html."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Run the training study: precision modes and training tricks measured against fp32."""
    from hasten.api import optimize_training
    from hasten.report.train_terminal import render
    from hasten.train.run import DEFAULT_DEMOS, DEMOS

    def go() -> None:
        if recipe is not None and demo is not None:
            raise HastenError("Give a recipe or --demo, not both.")
        if demo is not None and demo not in DEMOS:
            raise HastenError(f"--demo takes {', '.join(DEMOS)}, not {demo!r}.")
        # A demo's own settings, then what the user gave.
        runs = ([(recipe, {})] if recipe is not None else
                [(DEMOS[d][0], {**DEMOS[d][1], "name": f"demo-{d}"})
                 for d in ([demo] if demo else DEFAULT_DEMOS)])
        for path, settings in runs:
            with _progress_bar() as (progress, log):
                study = optimize_training(path, report=not no_report, progress=progress,
                                          log=log, **{**settings, **given})
            for one in study if isinstance(study, list) else [study]:
                _show_study(one, as_json, render, not no_report)

    _guard(debug, go)


@app.command()
def export(
    study: Path = typer.Argument(..., metavar="STUDY",
                                 help="A study folder, e.g. hasten-runs/demo-minilm."),
    objective: str = typer.Option("latency", metavar="OBJECTIVE",
                                  help="latency, throughput, corpus, memory or size; for a "
                                       "decoder latency, ttft, throughput, memory or size."),
    candidate: str = typer.Option(None, metavar="NAME",
                                  help="Export this candidate instead of the best."),
    to: Path = typer.Option(Path("fast"), "--to", "-t", metavar="DIR", help="Folder to write "
                            "the artifact to: a new or empty one, or one hasten exported to "
                            "before."),
    trust_code: bool = typer.Option(False, "--trust-code",
                                    help="Run the Python file a py: model names even though this "
                                         "study was not made by this account."),
    as_json: bool = typer.Option(False, "--json", help="Print the folder and its "
                                 "candidate.json as JSON."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Write a study's best (or chosen) candidate with a loading snippet that runs as is."""
    from hasten.api import open_study
    from hasten.generate.study import GenerateStudy
    from hasten.infer.study import Study

    def go() -> None:
        opened = open_study(study)
        # A training study is refused by Study in its own sentence.
        chosen = opened if isinstance(opened, GenerateStudy) else Study(study)
        folder = chosen.export(to, objective, candidate, trust_code=trust_code)
        if as_json:
            recipe = json.loads((folder / "candidate.json").read_text())
            print(json.dumps({"folder": str(folder), **recipe}, indent=2))
            return
        # Plain print: a path is neither wrapped nor read as markup.
        print(f"Wrote {folder}; run it with: python {folder / 'load.py'}")

    _guard(debug, go)


@app.command()
def report(
    study: Path = typer.Argument(..., metavar="STUDY",
                                 help="A study folder, e.g. hasten-runs/demo-minilm."),
    open_it: bool = typer.Option(False, "--open", help="Open the report in a web browser."),
    to: Path = typer.Option(None, "--to", "-t", metavar="FILE", help="Write the report to this "
                            "file instead of report.html in the study folder (for a folder "
                            "you may not write to)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report's path as JSON."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Write a study's self-contained HTML report (report.html in its folder) from its store;
    the study itself is only read."""
    import webbrowser

    from hasten.api import open_study, write_report

    def go() -> None:
        path = write_report(open_study(study), to)
        print(json.dumps({"report": str(path)}) if as_json else f"Wrote {path}")
        if open_it:
            webbrowser.open(path.resolve().as_uri())

    _guard(debug, go)


@app.command()
def compare(
    folders: list[Path] = typer.Argument(..., metavar="STUDY",
                                         help="Two study folders (from other runs or machines), "
                                              "or more: e.g. hasten-runs/my-model@* for its "
                                              "machine types side by side."),
    html: Path = typer.Option(None, metavar="FILE",
                              help="Also write the comparison as an HTML file."),
    fail_above: float = typer.Option(None, metavar="RATIO",
                                     help="Exit with code 1 when a candidate at a point is more "
                                          "than this many times slower in the second study than "
                                          "in the first, beyond both runs' spread (1.1: 10% "
                                          "slower), for CI."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Two studies side by side: ratios per candidate and point, and which exceed the spread;
    three or more: each one's latency and speedup over its own baseline, a column each."""
    from hasten.report import compare as comparing
    from hasten.report.html import write

    regressed: list[dict] = []
    said = sys.stderr if as_json else sys.stdout  # stdout holds nothing but the JSON

    def go() -> None:
        if len(folders) < 2:
            raise HastenError("compare takes two study folders or more.")
        if fail_above is not None and (len(folders) != 2 or not fail_above >= 1):
            raise HastenError("--fail-above takes two study folders and a ratio of at least 1 "
                              f"(1.1 allows 10% slower), not {len(folders)} folders and "
                              f"{fail_above}.")
        if len(folders) == 2:
            result = comparing.compare(*folders)
            render, page = comparing.render_terminal, comparing.render_html
            if fail_above is not None:
                regressed.extend(result.regressions(fail_above))
        else:
            result = comparing.compare_types(folders)
            render, page = comparing.render_types_terminal, comparing.render_types_html
        _show(result.to_dict(), as_json, lambda _, console: render(result, console))
        if html:
            print(f"Wrote {write(page(result), html)}", file=said)

    _guard(debug, go)
    for m in regressed:
        print(f"Regressed: {m['candidate']} at {m['point']}, {m['ratio']:.2f}x the first "
              f"study's latency (more than {fail_above}x, beyond both runs' spread)", file=said)
    if regressed:
        raise typer.Exit(1)


@app.command()
def lint(
    paths: list[Path] = typer.Argument(None, metavar="PATH",
                                       help="Python files and folders to read."),
    output_format: str = typer.Option("text", "--format", metavar="FORMAT",
                                      help="text, json or sarif."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON (the same as "
                                 "--format json)."),
    fix: bool = typer.Option(False, "--fix", help="Apply the safe fixes to the files."),
    diff: bool = typer.Option(False, "--diff",
                              help="Show the safe fixes as a diff; change nothing."),
    select: str = typer.Option(None, metavar="CODES",
                               help="Only these rule codes or prefixes, comma-separated (replaces"
                                    " [tool.hasten.lint] select)."),
    ignore: str = typer.Option(None, metavar="CODES",
                               help="Leave out these rule codes or prefixes, comma-separated "
                                    "(added to [tool.hasten.lint] ignore)."),
    explain: str = typer.Option(None, metavar="CODE",
                                help="Explain a rule code, e.g. HST103, and exit."),
    recipe: Path = typer.Option(None, metavar="RECIPE",
                                help="A hasten train recipe: its findings and which candidate of "
                                     "its study measures each (read, not run)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Read training and inference code for the performance checklist, without running it;
    each finding names the hasten candidate that measures its fix. Exit 1 with findings."""
    from hasten.lint import config, output, run
    from hasten.lint.recipe import lint_recipe

    def go() -> None:
        if explain:
            print(run.explain(explain))
            return
        chosen_format = "json" if as_json else output_format
        if as_json and output_format not in ("text", "json"):
            raise HastenError(f"Give --json or --format {output_format}, not both.")
        if chosen_format not in output.FORMATS:
            raise HastenError(f"--format takes {', '.join(output.FORMATS)}, not {chosen_format}.")
        if bool(paths) == bool(recipe):
            raise HastenError("Give the files to lint, or --recipe, not both nor neither.")
        chosen, _ = config.from_pyproject((paths or [recipe])[0])
        if select is not None:
            chosen = config.Selection(config.check_codes(tuple(select.split(",")), "--select"),
                                      chosen.ignore)
        if ignore is not None:
            chosen = config.Selection(chosen.select, chosen.ignore
                                      + config.check_codes(tuple(ignore.split(",")), "--ignore"))
        if recipe:
            result = lint_recipe(recipe, chosen)
            print("\n".join(result.lines()))
            raise typer.Exit(result.report.exit_code)
        report = run.lint(paths, chosen, fix=fix or diff, write=not diff)
        if diff:
            sys.stdout.write("".join(report.diffs))
        sys.stdout.write(output.RENDER[chosen_format](report))
        if chosen_format == "text" and report.findings:
            fixable = sum(f.fixable for f in report.findings)
            n = len(report.findings)
            err.print(f"{n} finding{'' if n == 1 else 's'}"
                      + (f", {fixable} fixable with --fix" if fixable else "")
                      + "; hasten lint --explain CODE says why and what measures the fix.",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(report.exit_code)

    _guard(debug, go)


numerics = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                       help="Number formats, how a value fares in each, and a model's range "
                       "audit.")
app.add_typer(numerics, name="numerics")


@numerics.command("formats")
def numerics_formats(
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON."),
) -> None:
    """Bits, range and precision of float64 down to float8 and int8."""
    from hasten.numerics.formats import table
    from hasten.report.numerics import render_formats

    _show(table(), as_json, render_formats)


@numerics.command("value", context_settings={"ignore_unknown_options": True})
def numerics_value(
    x: str = typer.Argument(..., metavar="X", help="A value: 0.1, -3.75, 1e-8, 1/3 or 2^-24."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """The nearest value to X in every format, its error, spacing, and what happens to it."""
    from hasten.numerics.formats import explain_value, parse_value
    from hasten.report.numerics import render_value

    def go() -> None:
        _show(explain_value(parse_value(x)), as_json, render_value)

    _guard(debug, go)


@numerics.command("audit")
def numerics_audit(
    recipe: Path = typer.Argument(None, metavar="RECIPE",
                                  help="A training recipe (runs that file's code): adds gradients"
                                       " and optimizer updates."),
    model: str = typer.Option(None, metavar="SPEC",
                              help="Model spec to audit forward only (default demo): demo, "
                                   "hf:DIR, py:FILE:FACTORY (runs that file's code)."),
    data: Path = typer.Option(None, metavar="FILE",
                              help="Text data: .txt (one per line), .csv or .jsonl."),
    column: str = typer.Option(None, metavar="NAME", help="Text column of a .csv or .jsonl file."),
    task: str = typer.Option(None, metavar="TASK",
                             help="feature-extraction or sequence-classification."),
    input_shape: str = typer.Option(None, metavar="SHAPE",
                                    help="Input shape without batch, e.g. 3x224x224."),
    samples: int = typer.Option(256, metavar="N", help="Samples to run through the model."),
    batch_size: int = typer.Option(16, metavar="N", help="Batch size."),
    steps: int = typer.Option(8, metavar="N", help="Training steps for a recipe."),
    max_drop: float = typer.Option(0.01, metavar="FRACTION",
                                   help="Tolerance for the confirmation runs."),
    random_weights: bool = typer.Option(False, "--random-weights",
                                        help="Audit a model folder without weights with seeded "
                                             "random weights."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole audit as JSON."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Run in fp32 with hooks; report per module what fp16 and bf16 would do, and a verdict."""
    from hasten.flags import parse_shape
    from hasten.numerics.audit import audit_model, audit_recipe
    from hasten.report.numerics import render_audit

    def go() -> None:
        if recipe is not None and (model or data or input_shape):
            raise HastenError("Give either a recipe or --model (with --data), not both.")
        if recipe is not None:
            result = audit_recipe(recipe, batch_size=batch_size, steps=steps, max_drop=max_drop)
        else:
            result = audit_model(
                model or "demo", data=data, column=column, task=task,
                input_shape=parse_shape(input_shape) if input_shape else None,
                samples=samples, batch_size=batch_size, max_drop=max_drop,
                random_weights=random_weights,
            )
        _show(result, as_json, render_audit)

    _guard(debug, go)


def main() -> None:
    app(prog_name="hasten")


if __name__ == "__main__":
    sys.exit(main())

"""The command line: parse, call the library, render. No logic of its own."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hasten.errors import HastenError
from hasten.flags import with_flags

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


# Where trials run: the same flags on `infer` and `train`.
EXECUTOR = typer.Option("local", help="Where trials run: local (processes on this machine) or "
                        "ray (a Ray cluster; pip install 'hasten[ray]').")
RAY_ADDRESS = typer.Option(None, help="The Ray cluster to attach to, e.g. auto (default: start "
                           "a local one).")
MACHINE_TYPE = typer.Option(None, help="The cluster's machine type to measure on (needed when "
                            "it has several).")
PER_MACHINE_TYPE = typer.Option(False, help="One study per machine type of the cluster "
                                "(NAME@TYPE), at once, and a page comparing them.")
RAY_SHARE = typer.Option(False, help="Let trials share a node (smoke runs): each holds one CPU "
                         "instead of the whole node.")
RAY_SHARED_PATH = typer.Option(None, help="A folder mounted at the same path on every node, "
                               "holding --out: nodes read artifacts there instead of through "
                               "the object store.")


@app.command()
def infer(
    model: str = typer.Option("demo", help="Model spec: demo, demo-decoder, hf:DIR, "
                              "py:FILE:FACTORY (runs that file's code), onnx:FILE. A decoder "
                              "language model (a ...ForCausalLM) gets the generation study."),
    demo: str = typer.Option(None, help="Run a bundled demo instead of --model: minilm (the "
                             "sentence encoder) or decoder (a small Llama-style decoder, "
                             "trained once on the demo corpus and kept in your cache)."),
    data: Path = typer.Option(None, help="Text data (.txt, one per line; .csv; .jsonl), or for "
                              "image models a folder of images (DIR/<label>/<image> for labels)."),
    column: str = typer.Option(None, help="Text column of a .csv or .jsonl file."),
    label_column: str = typer.Option(None, help="Integer label column, to measure accuracy."),
    task: str = typer.Option(None, help="feature-extraction or sequence-classification; "
                             "image-classification or image-feature-extraction; "
                             "text-generation."),
    input_shape: str = typer.Option(None, help="Input shape without batch, e.g. 3x224x224."),
    image_size: str = typer.Option(None, help="Resize images to this size, e.g. 224 or 224x160 "
                                   "(default: the model's config or input)."),
    mean: str = typer.Option(None, help="Per-channel mean to normalize images, e.g. "
                             "0.485,0.456,0.406 (default: the model's config, else 0)."),
    std: str = typer.Option(None, help="Per-channel std to normalize images (default: the "
                            "model's config, else 1)."),
    batch_sizes: str = typer.Option(None, help="Batch sizes to measure (default 1,8,32,64)."),
    seq_lengths: str = typer.Option(None, help="Sequence lengths for text (default 32,128)."),
    max_length: int = typer.Option(None, help="Where texts are cut, in tokens, for the "
                                   "fidelity check and the corpus passes (default: all the "
                                   "model attends to, at most 512)."),
    prompt_lengths: str = typer.Option(None, help="Decoders: prompt lengths in tokens "
                                       "(default 128,512, those the model fits)."),
    new_tokens: int = typer.Option(None, help="Decoders: tokens generated greedily after "
                                   "each prompt (default 64)."),
    max_drop: float = typer.Option(0.01, help="Tolerance: pooled cosine >= 1-max_drop, or at "
                                   "most this relative drop of accuracy with labels; for a "
                                   "decoder, at most this relative rise of perplexity."),
    calibration_samples: int = typer.Option(None, help="Samples static int8 calibrates on "
                                            "(default 128; all there are, when fewer)."),
    random_weights: bool = typer.Option(False, help="Measure an hf: folder that holds no "
                                        "weights (a config only) with seeded random weights: "
                                        "speeds only; the output and the export say so."),
    quick: bool = typer.Option(False, help="Fewer candidates and points: about two minutes."),
    out: Path = typer.Option(Path("hasten-runs"), help="Folder that holds study folders."),
    name: str = typer.Option(None, help="Study name (default: the model's name)."),
    fresh: bool = typer.Option(False, help="Start the study over instead of resuming."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    budget: str = typer.Option(None, help="How long the study may take, e.g. 8m, 90s or "
                               "none (default 8m; 2m with --quick); run it again to go on."),
    trial_timeout: float = typer.Option(None, help="Seconds one trial process may run "
                                        "(default: 30 times the baseline's own, at least 120)."),
    executor: str = EXECUTOR,
    ray_address: str = RAY_ADDRESS,
    machine_type: str = MACHINE_TYPE,
    per_machine_type: bool = PER_MACHINE_TYPE,
    ray_share: bool = RAY_SHARE,
    ray_shared_path: Path = RAY_SHARED_PATH,
    as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write report.html."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Run the inference study: every candidate measured, checked and ranked."""
    from hasten.api import optimize_inference
    from hasten.flags import parse_duration, parse_shape, parse_size
    from hasten.generate.study import GenerateStudy
    from hasten.report import generate as generate_view
    from hasten.report.terminal import render

    def go() -> None:
        if demo is not None and demo not in INFER_DEMOS:
            raise HastenError(f"--demo takes {', '.join(INFER_DEMOS)}, not {demo!r}.")
        if demo is not None and model != "demo":
            raise HastenError("Give --model or --demo, not both.")
        with _progress_bar() as (progress, log):
            study = optimize_inference(
                INFER_DEMOS[demo] if demo else model, data=data, column=column,
                label_column=label_column, task=task,
                input_shape=parse_shape(input_shape) if input_shape else None,
                image_size=parse_size(image_size) if image_size else None,
                mean=_numbers(mean, "--mean", float), std=_numbers(std, "--std", float),
                batch_sizes=_numbers(batch_sizes, "--batch-sizes"),
                seq_lengths=_numbers(seq_lengths, "--seq-lengths"), max_length=max_length,
                prompt_lengths=_numbers(prompt_lengths, "--prompt-lengths"),
                new_tokens=new_tokens, max_drop=max_drop,
                calibration_samples=calibration_samples, random_weights=random_weights,
                quick=quick, out=out, name=name,
                fresh=fresh, device=device, trial_timeout_s=trial_timeout,
                time_budget_s=parse_duration(budget) if budget else None, progress=progress,
                log=log, report=not no_report, executor=executor, ray_address=ray_address,
                machine_type=machine_type, per_machine_type=per_machine_type,
                ray_share=ray_share, ray_shared_path=ray_shared_path,
            )
        for one in study if isinstance(study, list) else [study]:
            view = generate_view.render if isinstance(one, GenerateStudy) else render
            _show_study(one, as_json, view, not no_report)

    _guard(debug, go)


# `hasten infer --demo NAME`: the model spec each bundled demo runs.
INFER_DEMOS = {"minilm": "demo", "decoder": "demo-decoder"}


@app.command()
def train(
    recipe: Path = typer.Argument(None, help="A training recipe file, PyTorch or Keras (runs "
                                  "that file's code); default: the bundled digits CNN and "
                                  "MiniLM text demos."),
    demo: str = typer.Option(None, help="Run one bundled demo instead: digits, text or "
                             "keras-digits (needs Keras)."),
    keras_backend: str = typer.Option(None, help="Keras recipes: tensorflow or torch "
                                      "(default: tensorflow when installed, else torch)."),
    steps: int = typer.Option(None, help="Steps fp32, the precision modes and the fastest "
                               "candidates train for before evaluation (default 100; the demos "
                               "set their own)."),
    batch_size: int = typer.Option(None, help="Batch size per process (default 32; the demos "
                                   "set their own)."),
    evaluate: bool = typer.Option(None, "--eval/--no-eval", help="Evaluate with the recipe's "
                                  "eval_data() and evaluate() (default: when it has them)."),
    devices: int = typer.Option(1, help="Processes to train with through Fabric's DDP "
                                "strategy (gloo on a CPU)."),
    memory_budget: str = typer.Option(None, help="Memory the batch-size search may fill, e.g. "
                                      "4GiB (default: the device's free memory)."),
    max_drop: float = typer.Option(0.01, help="Tolerance: the eval metric (else the final loss) "
                                   "at most this much worse than fp32's, relative."),
    quick: bool = typer.Option(False, help="Fewer candidates: the precision modes and the "
                               "switches most likely to pay (the text demo's default)."),
    out: Path = typer.Option(Path("hasten-runs"), help="Folder that holds study folders."),
    name: str = typer.Option(None, help="Study name (default: the recipe's file name; the "
                             "demos are demo-digits and demo-text)."),
    fresh: bool = typer.Option(False, help="Start the study over instead of resuming."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    budget: str = typer.Option(None, help="How long each study may take, e.g. 10m, 90s or "
                               "none (default none; the demos 3m and 6m); run it again to go "
                               "on."),
    trial_timeout: float = typer.Option(None, help="Seconds one trial process may run "
                                        "(default: 30 times fp32's own, at least 120)."),
    executor: str = EXECUTOR,
    ray_address: str = RAY_ADDRESS,
    machine_type: str = MACHINE_TYPE,
    per_machine_type: bool = PER_MACHINE_TYPE,
    ray_share: bool = RAY_SHARE,
    ray_shared_path: Path = RAY_SHARED_PATH,
    as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write report.html."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Run the training study: precision modes and training tricks measured against fp32."""
    from hasten.api import optimize_training
    from hasten.flags import parse_duration, parse_memory
    from hasten.report.train_terminal import render
    from hasten.train.run import DEFAULT_DEMOS, DEMOS

    def go() -> None:
        if recipe is not None and demo is not None:
            raise HastenError("Give a recipe or --demo, not both.")
        if demo is not None and demo not in DEMOS:
            raise HastenError(f"--demo takes {', '.join(DEMOS)}, not {demo!r}.")
        runs = ([(recipe, {}, name)] if recipe is not None else
                [(DEMOS[d][0], DEMOS[d][1], name or f"demo-{d}")
                 for d in ([demo] if demo else DEFAULT_DEMOS)])
        memory = parse_memory(memory_budget) if memory_budget else None
        seconds = parse_duration(budget) if budget else None
        for path, settings, study_name in runs:
            with _progress_bar() as (progress, log):
                study = optimize_training(
                    path, steps=settings.get("steps", 100) if steps is None else steps,
                    batch_size=(settings.get("batch_size", 32) if batch_size is None
                                else batch_size),
                    evaluate=evaluate, devices=devices, memory_budget_mb=memory,
                    max_drop=max_drop, quick=quick or settings.get("quick", False), out=out,
                    name=study_name, fresh=fresh, device=device,
                    time_budget_s=settings.get("time_budget_s") if seconds is None else seconds,
                    trial_timeout_s=trial_timeout, keras_backend=keras_backend,
                    progress=progress, log=log,
                    report=not no_report, executor=executor, ray_address=ray_address,
                    machine_type=machine_type, per_machine_type=per_machine_type,
                    ray_share=ray_share, ray_shared_path=ray_shared_path,
                )
            for one in study if isinstance(study, list) else [study]:
                _show_study(one, as_json, render, not no_report)

    _guard(debug, go)


@app.command()
def export(
    study: Path = typer.Argument(..., help="A study folder, e.g. hasten-runs/demo-minilm."),
    objective: str = typer.Option("latency", help="latency, throughput, corpus, memory or "
                                  "size; for a decoder latency, ttft, throughput, memory or "
                                  "size."),
    candidate: str = typer.Option(None, help="Export this candidate instead of the best."),
    out: Path = typer.Option(Path("fast"), help="Folder to write the artifact to: a new or "
                             "empty one, or one hasten exported to before."),
    trust_code: bool = typer.Option(False, help="Run the Python file a py: model names even "
                                    "though this study was not made by this account."),
    as_json: bool = typer.Option(False, "--json", help="Print the folder and its "
                                 "candidate.json as JSON."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Write a study's best (or chosen) candidate with a loading snippet that runs as is."""
    from hasten.api import open_study
    from hasten.generate.study import GenerateStudy
    from hasten.infer.study import Study

    def go() -> None:
        opened = open_study(study)
        # A training study is refused by Study in its own sentence.
        chosen = opened if isinstance(opened, GenerateStudy) else Study(study)
        folder = chosen.export(out, objective, candidate, trust_code=trust_code)
        if as_json:
            recipe = json.loads((folder / "candidate.json").read_text())
            print(json.dumps({"folder": str(folder), **recipe}, indent=2))
            return
        # Plain print: a path is neither wrapped nor read as markup.
        print(f"Wrote {folder}; run it with: python {folder / 'load.py'}")

    _guard(debug, go)


@app.command()
def report(
    study: Path = typer.Argument(..., help="A study folder, e.g. hasten-runs/demo-minilm."),
    open_it: bool = typer.Option(False, "--open", help="Open the report in a web browser."),
    out: Path = typer.Option(None, help="Write the report to this file instead of report.html "
                             "in the study folder (for a folder you may not write to)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report's path as JSON."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Write a study's self-contained HTML report (report.html in its folder) from its store;
    the study itself is only read."""
    import webbrowser

    from hasten.api import open_study, write_report

    def go() -> None:
        path = write_report(open_study(study), out)
        print(json.dumps({"report": str(path)}) if as_json else f"Wrote {path}")
        if open_it:
            webbrowser.open(path.resolve().as_uri())

    _guard(debug, go)


@app.command()
def compare(
    folders: list[Path] = typer.Argument(..., help="Two study folders (from other runs or "
                                         "machines), or more: e.g. hasten-runs/my-model@* for "
                                         "its machine types side by side."),
    html: Path = typer.Option(None, help="Also write the comparison as an HTML file."),
    fail_above: float = typer.Option(None, help="Exit with code 1 when a candidate at a point "
                                     "is more than this many times slower in the second study "
                                     "than in the first, beyond both runs' spread (1.1: 10% "
                                     "slower), for CI."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
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
    paths: list[Path] = typer.Argument(None, help="Python files and folders to read."),
    output_format: str = typer.Option("text", "--format", help="text, json or sarif."),
    fix: bool = typer.Option(False, help="Apply the safe fixes to the files."),
    diff: bool = typer.Option(False, help="Show the safe fixes as a diff; change nothing."),
    select: str = typer.Option(None, help="Only these rule codes or prefixes, comma-separated "
                               "(replaces [tool.hasten.lint] select)."),
    ignore: str = typer.Option(None, help="Leave out these rule codes or prefixes, "
                               "comma-separated (added to [tool.hasten.lint] ignore)."),
    explain: str = typer.Option(None, help="Explain a rule code, e.g. HST103, and exit."),
    recipe: Path = typer.Option(None, help="A hasten train recipe: its findings and which "
                                "candidate of its study measures each (read, not run)."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Read training and inference code for the performance checklist, without running it;
    each finding names the hasten candidate that measures its fix. Exit 1 with findings."""
    from hasten.lint import config, output, run
    from hasten.lint.recipe import lint_recipe

    def go() -> None:
        if explain:
            print(run.explain(explain))
            return
        if output_format not in output.FORMATS:
            raise HastenError(f"--format takes {', '.join(output.FORMATS)}, not {output_format}.")
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
        sys.stdout.write(output.RENDER[output_format](report))
        if output_format == "text" and report.findings:
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
    x: str = typer.Argument(..., help="A value: 0.1, -3.75, 1e-8, 1/3 or 2^-24."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """The nearest value to X in every format, its error, spacing, and what happens to it."""
    from hasten.numerics.formats import explain_value, parse_value
    from hasten.report.numerics import render_value

    def go() -> None:
        _show(explain_value(parse_value(x)), as_json, render_value)

    _guard(debug, go)


@numerics.command("audit")
def numerics_audit(
    recipe: Path = typer.Argument(None, help="A training recipe (runs that file's code): "
                                  "adds gradients and optimizer updates."),
    model: str = typer.Option(None, help="Model spec to audit forward only (default demo): "
                              "demo, hf:DIR, py:FILE:FACTORY (runs that file's code)."),
    data: Path = typer.Option(None, help="Text data: .txt (one per line), .csv or .jsonl."),
    column: str = typer.Option(None, help="Text column of a .csv or .jsonl file."),
    task: str = typer.Option(None, help="feature-extraction or sequence-classification."),
    input_shape: str = typer.Option(None, help="Input shape without batch, e.g. 3x224x224."),
    samples: int = typer.Option(256, help="Samples to run through the model."),
    batch_size: int = typer.Option(16, help="Batch size."),
    steps: int = typer.Option(8, help="Training steps for a recipe."),
    max_drop: float = typer.Option(0.01, help="Tolerance for the confirmation runs."),
    random_weights: bool = typer.Option(False, help="Audit a model folder without weights "
                                        "with seeded random weights."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole audit as JSON."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
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

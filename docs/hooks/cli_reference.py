"""MkDocs hook: pages generated at build time, so that they cannot drift from their source.

- `reference.md`: every command of the `hasten` CLI (its usage, help and each option's
  flags, value, default and help), read from the click command that `hasten.cli.app` builds,
  not from a copy of it. A renamed flag, a new command or a new default shows on the next
  build. The committed `docs/reference.md` is a stub that says so (for readers on GitHub);
  the build replaces its text.
- `benchmark-results.md`: `benchmarks/README.md` as it is, so the site's figures are the
  benchmarks' own.

Nothing here is committed output: `mkdocs build` writes the pages into the site only. Links in
the docs to `../benchmarks/README.md` (which work on GitHub) are pointed at the generated page.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
CLI_PAGE = "reference.md"
# Files of the repository outside docs/ that the site carries as pages: source -> page.
INCLUDED = {"benchmarks/README.md": "benchmark-results.md"}
# "  [default: 1]", "  [required]", "  [env var: X]" at the end of a click help text.
SUFFIX = re.compile(r"\s*\[(default: (?P<default>.*?)|required|env var: [^\]]*)\]\s*$")


def _root_command():
    """The click command the `hasten` entry point runs (typer builds it from `app`)."""
    from hasten.cli import app

    if hasattr(app, "get_params"):  # already a click command
        return app
    import typer.main

    return typer.main.get_command(app)


def _text(value: str) -> str:
    """Plain help text as Markdown inline text: no HTML, no emphasis, no table break."""
    value = html.escape(" ".join(str(value).split()), quote=False)
    return re.sub(r"([\\`*_\[\]|])", r"\\\1", value)


def _code(value: str) -> str:
    """A span of code that may itself hold backticks (a pipe in it does not end the table
    cell: the tables extension reads code spans whole)."""
    value = " ".join(value.split())
    fence = "``" if "`" in value else "`"
    return f"{fence} {value} {fence}" if fence == "``" else f"`{value}`"


def _help_parts(param, ctx) -> tuple[str, str, str]:
    """(flags with their value, default, help) as the command's own --help shows them."""
    record = param.get_help_record(ctx)
    if record is None:
        return "", "", ""
    flags, help_text = record
    default, extras = "", []
    while True:
        match = SUFFIX.search(help_text)
        if not match:
            break
        if match.group("default") is not None:
            default = match.group("default")
        else:
            extras.append(match.group(1))
        help_text = help_text[: match.start()]
    if not default and "required" in extras:
        default = "required"
    return flags, default, help_text


def _command_help(command) -> str:
    return (command.help or command.short_help or "").strip()


def _render(command, ctx, path: list[str], out: list[str]) -> None:
    """One command's section, then its subcommands' (depth first, in declared order)."""
    name = " ".join(path)
    out += [f"## {name}", ""]
    help_text = _command_help(command)
    if help_text:
        out += ["\n".join(_text(line) for line in help_text.splitlines()), ""]
    usage = command.get_usage(ctx).strip()
    out += ["```text", usage, "```", ""]
    rows = []
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        flags, default, text = _help_parts(param, ctx)
        if not flags:
            continue
        kind = "argument" if param.param_type_name == "argument" else "option"
        rows.append(f"| {_code(flags)} | {kind} | {_code(default) if default else ''} "
                    f"| {_text(text)} |")
    if rows:
        out += ["| flag | kind | default | what it does |", "|---|---|---|---|", *rows, ""]
    commands = getattr(command, "commands", None)
    if commands:
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is None or getattr(sub, "hidden", False):
                continue
            sub_ctx = sub.context_class(sub, info_name=sub_name, parent=ctx)
            _render(sub, sub_ctx, path + [sub_name], out)


def cli_reference() -> str:
    """The Markdown of the CLI reference page."""
    root = _root_command()
    ctx = root.context_class(root, info_name="hasten")
    out = ["# Command reference", "",
           "Generated from the `hasten` command itself when the site is built: each section is "
           "what `hasten COMMAND --help` prints, laid out as a table. A flag's default is "
           "the one the command declares.", ""]
    commands = [c for c in root.list_commands(ctx)
                if not getattr(root.get_command(ctx, c), "hidden", False)]
    out += ["Commands: " + ", ".join(f"[{c}](#hasten-{c})" for c in commands) + ".", ""]
    _render(root, ctx, ["hasten"], out)
    return "\n".join(out) + "\n"


def _benchmarks_link(markdown: str, page) -> str:
    """Point links at the repository files the site carries as generated pages."""
    here = Path(page.file.src_uri).parent
    for source, target in INCLUDED.items():
        rel = Path("..", *[".."] * len(here.parts), source).as_posix()
        goal = Path(*[".."] * len(here.parts), target).as_posix() if here.parts else target
        markdown = re.sub(r"\]\(" + re.escape(rel) + r"(#[^)]*)?\)",
                          lambda m, goal=goal: f"]({goal}{m.group(1) or ''})", markdown)
    return markdown


def on_files(files, config):
    """Add the pages generated from files outside docs/ to the site's files."""
    for source, target in INCLUDED.items():
        files.append(File.generated(config, target,
                                    content=(ROOT / source).read_text(encoding="utf-8")))
    return files


def on_page_markdown(markdown, page, config, files):
    """The CLI reference replaces its stub; links to included files go to their pages."""
    if page.file.src_uri == CLI_PAGE:
        return cli_reference()
    return _benchmarks_link(markdown, page)

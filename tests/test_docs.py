"""The README and the docs site: the README stays one page whose test command is CI's, its
links lead somewhere, and the generated command reference covers every command and flag the
CLI declares. (CI also builds the site with `mkdocs build --strict`.)"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _hook():
    """docs/hooks/cli_reference.py, the MkDocs hook that writes the command reference."""
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location(
        "cli_reference", ROOT / "docs" / "hooks" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_one_page_whose_test_command_ci_runs():
    lines = README.read_text().splitlines()
    assert len(lines) < 150
    commands = [line.strip() for line in lines if "pytest" in line and "pip install" in line]
    assert len(commands) == 1, commands
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert commands[0] in ci
    # Every install line keeps the constraints file (an unpinned torch pulls CUDA wheels).
    for line in lines:
        if "pip install" in line:
            assert "-c constraints.txt" in line, line


def test_readme_links_lead_to_files():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    local = [t for t in targets if "://" not in t]
    assert local
    for target in local:
        assert (ROOT / target).is_file(), target


def test_cli_reference_covers_every_command_and_flag():
    hook = _hook()
    page = hook.cli_reference()
    root = hook._root_command()

    def walk(command, ctx, path):
        yield path, command, ctx
        for name in getattr(command, "list_commands", lambda _: [])(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not getattr(sub, "hidden", False):
                yield from walk(sub, sub.context_class(sub, info_name=name, parent=ctx),
                                path + [name])

    seen = 0
    for path, command, ctx in walk(root, root.context_class(root, info_name="hasten"),
                                   ["hasten"]):
        assert f"## {' '.join(path)}\n" in page
        for param in command.get_params(ctx):
            if getattr(param, "hidden", False):
                continue
            # An option by its flags; an argument by what --help calls it (its metavar).
            names = ([*param.opts, *param.secondary_opts] if param.param_type_name == "option"
                     else [param.get_help_record(ctx)[0]])
            for name in names:
                assert f"`{name}" in page or f" {name}" in page, (path, name)
                seen += 1
    assert seen > 50
    assert "## hasten infer\n" in page and "## hasten numerics audit\n" in page


# `hasten COMMAND ...` in the README and the docs, up to a backtick, a comment or the line's end.
MENTION = re.compile(r"\bhasten ([^`\n#]*)")
FLAG = re.compile(r"-{1,2}[A-Za-z][\w-]*")


def test_readme_and_docs_use_only_flags_the_cli_declares():
    hook = _hook()
    root = hook._root_command()
    ctx = root.context_class(root, info_name="hasten")
    checked = 0
    for page in [README, *sorted((ROOT / "docs").rglob("*.md"))]:
        text = page.read_text().replace("\\\n", " ")
        for mention in MENTION.finditer(text):
            tokens = mention.group(1).split()
            command = root.get_command(ctx, tokens[0]) if tokens else None
            if command is None:  # prose: "hasten writes ..."
                continue
            command_ctx = command.context_class(command, info_name=tokens[0], parent=ctx)
            if hasattr(command, "get_command") and len(tokens) > 1:  # a group: its subcommand
                sub = command.get_command(command_ctx, tokens[1])
                if sub is None:
                    continue
                command, command_ctx = sub, sub.context_class(sub, info_name=tokens[1],
                                                              parent=command_ctx)
            declared = {flag for param in command.get_params(command_ctx)
                        for flag in [*param.opts, *param.secondary_opts]}
            for token in tokens[1:]:
                flag = token.split("=")[0].rstrip("),.;:")
                if FLAG.fullmatch(flag):
                    assert flag in declared, f"{page.name}: {mention.group(0).strip()!r}"
                    checked += 1
    assert checked > 30

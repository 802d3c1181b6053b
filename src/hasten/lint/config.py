"""Which rules run: `select`/`ignore` from `[tool.hasten.lint]` in the nearest pyproject.toml
that has that table, then the command line's."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from hasten.errors import HastenError
from hasten.lint.registry import REGISTRY

KEYS = ("select", "ignore")


@dataclass(frozen=True)
class Selection:
    """Rule codes or prefixes to run (all when empty) and to leave out."""

    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()

    def codes(self) -> list[str]:
        """The registered codes this selection runs, sorted."""
        return sorted(c for c in REGISTRY
                      if (not self.select or c.startswith(self.select))
                      and not c.startswith(self.ignore or ("\0",)))


EVERY_RULE = Selection()


def check_codes(codes: tuple[str, ...], where: str) -> tuple[str, ...]:
    """Codes as given, upper-cased; one that names no rule is refused in one sentence."""
    codes = tuple(c.strip().upper() for c in codes if c.strip())
    for code in codes:
        if not any(c.startswith(code) for c in REGISTRY):
            raise HastenError(f"{where} names {code}, which is no rule code; the codes are "
                              f"{min(REGISTRY)} to {max(REGISTRY)} (hasten lint --explain "
                              "CODE).")
    return codes


def from_pyproject(start: Path) -> tuple[Selection, Path | None]:
    """The selection from the nearest pyproject.toml above `start` with a
    `[tool.hasten.lint]` table, and that file (None when there is none)."""
    folder = start.resolve()
    folder = folder if folder.is_dir() else folder.parent
    for parent in (folder, *folder.parents):
        path = parent / "pyproject.toml"
        if not path.is_file():
            continue
        try:
            table = tomllib.loads(path.read_text()).get("tool", {}).get("hasten", {}).get("lint")
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise HastenError(f"{path} is not valid TOML: {exc}.") from None
        if table is None:
            continue
        unknown = sorted(set(table) - set(KEYS))
        if unknown:
            raise HastenError(f"{path}: [tool.hasten.lint] has no setting {unknown[0]}; it "
                              "takes select and ignore.")
        where = f"{path} [tool.hasten.lint]"
        lists = {}
        for key in KEYS:
            value = table.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise HastenError(f"{where}: {key} must be a list of rule codes.")
            lists[key] = check_codes(tuple(value), where)
        return Selection(**lists), path
    return Selection(), None

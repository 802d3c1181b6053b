"""Importing a recipe file, PyTorch or Keras, and telling which it is; no framework is imported
here, so a Keras trial process need not import PyTorch."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from hasten.errors import HastenError


def import_recipe(path: str | Path) -> ModuleType:
    """Import a recipe file, PyTorch or Keras (this runs its code), as a module."""
    path = Path(path).resolve()
    if not path.is_file():
        raise HastenError(f"No recipe file at {path}.")
    if path.suffix != ".py":
        raise HastenError(f"A recipe is a Python file; {path.name} is not a .py file.")
    spec = importlib.util.spec_from_file_location(f"hasten_recipe_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:
        raise HastenError(f"{path.name} called exit({exc.code}) while it was imported; a recipe "
                          "defines functions and does not exit.") from exc
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("keras", "tensorflow"):
            raise HastenError(f"{path.name} imports {exc.name}, which is not installed here; "
                              "install it with: pip install 'hasten[keras]'.") from exc
        raise HastenError(f"Importing {path.name} failed (ModuleNotFoundError: {exc}).") from exc
    except Exception as exc:
        raise HastenError(f"Importing {path.name} failed ({type(exc).__name__}: {exc}).") from exc
    finally:
        sys.path.remove(str(path.parent))
    return module


def is_keras_model(obj: object) -> bool:
    """Whether obj is a keras.Model, without importing Keras (a recipe that builds one has)."""
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(obj, keras.Model)

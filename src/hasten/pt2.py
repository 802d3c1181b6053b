"""An nn.Module captured with torch.export, and the `pt2:FILE` files that hold one: a module in
memory becomes a .pt2 file in its study folder, which every trial process loads, since no child
can import a class a notebook defined.

Loading checks the file first, because torch.export.load (read in torch 2.13:
torch/export/pt2_archive/_package.py and torch/_export/serde/serialize.py) runs more than
PyTorch's tensor reading on what a file holds:
- it unpickles: payloads saved with `use_pickle` (tensor subclasses) through
  torch.load(weights_only=False) (_load_state_dict, _load_constants), script objects through
  torch._C._pickle_load_obj and opaque objects through pickle.loads (_load_constants); a legacy
  archive's tensors (data/weights/MODEL.pt, or a zip with a top-level `version`) and every
  archive's example inputs through deserialize_torch_artifact, which retries with
  torch.load(weights_only=False) when weights_only=True fails;
- it evaluates: every symbolic shape (`expr_str`) goes through sympy.sympify, which runs Python
  (a crafted expression printed a line while torch.export.load read the file), and
  ExportedProgram.module() exec()s the file's `guards_code`;
- an archive with data/aotinductor/ holds compiled native code.
What it does check: its verifier refuses a graph node that calls anything but an operator (a
crafted node calling os.getpid was refused). So `load` refuses each of the above, checks that
the example inputs load with weights_only=True (so the retry never runs) and that every shape
expression is plain sympy arithmetic, loads those same bytes, builds the module without the
guards code, and refuses an operator that opens a file by name (aten::save, aten::from_file).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import json
import logging
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hasten.errors import HastenError, describe_error
from hasten.folders import write_whole

# The names a shape expression may call or name, beyond its symbols (s0, u1...): sympy's
# constructors as sympy.srepr writes them, and PyTorch's own sympy functions.
SYMPY_NAMES = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Max", "Min", "Mod", "Abs",
    "floor", "ceiling", "sqrt", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "Equality", "Unequality",
    "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan", "And", "Or", "Not",
    "Piecewise", "ITE", "true", "false", "oo", "zoo", "nan", "int_oo", "Half", "One",
    "Zero", "NegativeOne", "Infinity", "NegativeInfinity", "BooleanTrue", "BooleanFalse",
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt",
    "CeilDiv", "IntTrueDiv", "FloatTrueDiv", "LShift", "RShift",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt",
    "RoundDecimal", "ToFloat", "FloatPow", "PowByNatural", "Identity",
})
SYMBOL = re.compile(r"[a-z]+\d+")
# A string in an expression (a symbol's name, a Float's digits): a name or a number.
TEXT = re.compile(r"[A-Za-z_]\w*|-?[\d.]+(e[+-]?\d+)?")
ARITHMETIC = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Tuple,
              ast.Load, ast.operator, ast.unaryop, ast.boolop, ast.cmpop)


@dataclass
class Exported:
    """An nn.Module captured by torch.export: the program, the name a study takes from its
    class, a digest of what it computes (in its file's name, so that a changed module is
    another study, not a resumed one), and why its batch size is fixed, when it is."""

    program: torch.export.ExportedProgram
    name: str
    digest: str
    note: str | None = None

    def path(self, folder: Path) -> Path:
        """Where the program's file lies in a study folder."""
        return Path(folder) / f"model-{self.digest[:16]}.pt2"

    def save(self, path: Path) -> None:
        """Write the program with torch.export.save, whole (see folders.write_whole)."""
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.export.save(self.program, buffer)
        write_whole(path, buffer.getvalue())


def capture(module: torch.nn.Module, example_inputs: Any) -> Exported:
    """Capture `module` with torch.export on `example_inputs` (a tensor, or a tuple of the
    positional tensors of one call, each with a leading batch dimension), in eval mode, its
    batch dimension dynamic so that a study can measure several batch sizes; where torch.export
    refuses a dynamic batch, at the example's batch size only, with a note that says so."""
    inputs = _inputs(example_inputs)
    name = type(module).__name__
    if any(t.device.type != "cpu" for t in [*inputs, *module.parameters(), *module.buffers()]):
        raise HastenError(f"hasten captures {name} on the CPU and moves it to the study's "
                          "`device` itself; pass model.cpu() and example_inputs on the CPU.")
    # torch.export specializes a dimension of size 1, so a one-row example is sent twice.
    rows = tuple(t.expand(2, *t.shape[1:]).contiguous() if t.shape[0] == 1 else t
                 for t in inputs)
    batch = torch.export.Dim("batch", min=1)
    training, quiet = module.training, logging.root.manager.disable
    module.eval()
    # torch.export logs and prints each failed attempt's graph; the failure is told once, below.
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), torch.no_grad(), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            try:
                program = torch.export.export(module, rows,
                                              dynamic_shapes=tuple({0: batch} for _ in rows))
                note = None
            except Exception as exc:  # a batch torch.export cannot keep dynamic, or any failure
                try:
                    program = torch.export.export(module, inputs)
                except Exception as static:
                    raise HastenError(
                        f"torch.export could not capture {name}: {describe_error(static)}; make "
                        "its forward exportable (torch.export.draft_export lists every "
                        "problem), or give it as a py:FILE:FACTORY spec, which needs no "
                        "export.") from static
                note = (f"torch.export could not keep {name}'s batch dimension dynamic: "
                        f"{describe_error(exc)}")
    finally:
        logging.disable(quiet)
        module.train(training)
    if any(type(t) not in (torch.Tensor, torch.nn.Parameter)
           for t in [*program.state_dict.values(), *program.constants.values()]):
        raise HastenError(f"{name} holds tensor subclasses or script objects, which "
                          "torch.export would save with pickle, and hasten loads nothing "
                          "pickled; give it as a py:FILE:FACTORY spec instead.")
    return Exported(program, name, _digest(program), note)


def _inputs(example_inputs: Any) -> tuple[torch.Tensor, ...]:
    """The example inputs as a tuple of tensors, each with a batch dimension."""
    items = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else example_inputs
    if (not isinstance(items, tuple | list) or not items
            or not all(isinstance(t, torch.Tensor) and t.dim() >= 1 for t in items)):
        raise HastenError("`example_inputs` must be a tensor or a tuple of tensors, the "
                          "positional inputs of one call, each with a leading batch dimension.")
    return tuple(t.detach() for t in items)


def _digest(program: torch.export.ExportedProgram) -> str:
    """What a program computes, whatever file its code was written in: its graph's code, its
    inputs' shapes and dtypes and its tensors (not its stack traces, which change each time a
    notebook cell runs again)."""
    digest = hashlib.sha256(program.graph_module.code.encode())
    for node in program.graph.find_nodes(op="placeholder"):
        value = node.meta.get("val")
        digest.update(f"{node.name}:{getattr(value, 'dtype', '')}:"
                      f"{tuple(getattr(value, 'shape', ()))}".encode())
    for key, tensor in sorted({**program.state_dict, **program.constants}.items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def load(path: Path) -> tuple[torch.export.ExportedProgram, torch.fx.GraphModule]:
    """The program a .pt2 file holds and its module, loaded only once the file is checked to
    run nothing but PyTorch operators and tensor reading (see this module's docstring); a file
    that would is refused in one sentence."""
    from torch.export.pt2_archive import constants

    raw = Path(path).read_bytes()
    _check_archive(raw, path, constants)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.export.load(io.BytesIO(raw))  # the bytes checked, not the file again
        except Exception as exc:
            raise HastenError(f"torch.export.load cannot read {path} ({describe_error(exc)}); "
                              "save it again with torch.export.save.") from exc
        module = program.module(check_guards=False)  # without exec() of its guards code
    for graph in (m for m in module.modules() if isinstance(m, torch.fx.GraphModule)):
        for node in graph.graph.nodes:
            schema = getattr(node.target, "_schema", None)
            if node.op == "call_function" and schema is not None and any(
                    a.name == "filename" for a in schema.arguments):
                raise HastenError(f"The graph in {path} calls {schema.name}, which opens a file "
                                  "by name; hasten runs no such graph.")
    return program, module


def _check_archive(raw: bytes, path: Path, constants: Any) -> None:
    """Refuse a .pt2 archive that torch.export.load would read by unpickling or evaluating
    more than tensors and operator names."""
    def refuse(why: str) -> None:
        raise HastenError(f"{path} {why}, so hasten does not load it; save the model again with "
                          "torch.export.save from a current PyTorch.")

    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile:
        refuse("is not a .pt2 archive")
    names = archive.namelist()
    root = names[0].split("/", 1)[0] + "/" if names else ""
    if not names or any(not n.startswith(root) for n in names):
        refuse("does not keep its files in one archive folder as torch.export.save does")
    files = {n[len(root):]: n for n in names}
    models = [f[len(constants.MODELS_DIR):-len(".json")] for f in files
              if f.startswith(constants.MODELS_DIR) and f.endswith(".json")]
    if not models:
        refuse("holds no exported program")
    if any(f.startswith(constants.AOTINDUCTOR_DIR) for f in files):
        refuse("holds native code compiled by AOTInductor")
    for model in models:
        legacy = {f"{constants.WEIGHTS_DIR}{model}.pt", f"{constants.CONSTANTS_DIR}{model}.pt"}
        if legacy & set(files):
            refuse("is in the legacy format, whose tensors load by unpickling")
        try:
            weights, tensors = (json.loads(archive.read(files[form.format(model)]))["config"]
                                for form in (constants.WEIGHTS_CONFIG_FILENAME_FORMAT,
                                             constants.CONSTANTS_CONFIG_FILENAME_FORMAT))
            graph = archive.read(files[constants.MODELS_FILENAME_FORMAT.format(model)])
            program = json.loads(graph)
        except (KeyError, ValueError, TypeError):
            refuse("lacks the tensor lists torch.export.save writes")
        if any(e.get("use_pickle") for e in [*weights.values(), *tensors.values()]) or any(
                not e.get("path_name", "").startswith(constants.TENSOR_CONSTANT_FILENAME_PREFIX)
                for e in tensors.values()):
            refuse("holds tensor subclasses or script objects, which load by unpickling")
        examples = files.get(constants.SAMPLE_INPUTS_FILENAME_FORMAT.format(model))
        if examples is not None and (data := archive.read(examples)):
            try:
                torch.load(io.BytesIO(data), weights_only=True)
            except Exception:
                refuse("holds example inputs that load only by unpickling")
        bad = next((e for e in _expressions(program) if not _plain(e)), None)
        if bad is not None:
            refuse(f"holds a shape expression that is not plain arithmetic ({bad[:80]!r})")


def _expressions(value: Any) -> list[str]:
    """Every symbolic shape expression in a serialized program (the `expr_str` values)."""
    if isinstance(value, dict):
        own = [value["expr_str"]] if isinstance(value.get("expr_str"), str) else []
        return own + [e for v in value.values() for e in _expressions(v)]
    if isinstance(value, list):
        return [e for v in value for e in _expressions(v)]
    return []


def _plain(expression: str) -> bool:
    """Whether a shape expression is sympy arithmetic only: calls of SYMPY_NAMES, symbols,
    numbers, names and operators; no attribute, subscript, lambda or other name, so that
    sympify's evaluation of it runs nothing else."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            ok = node.id in SYMPY_NAMES or SYMBOL.fullmatch(node.id) is not None
        elif isinstance(node, ast.Call):
            ok = isinstance(node.func, ast.Name)  # the name itself is checked as a Name
        elif isinstance(node, ast.keyword):
            ok = node.arg is not None and not node.arg.startswith("_")
        elif isinstance(node, ast.Constant):
            ok = (isinstance(node.value, bool | int | float | type(None))
                  or isinstance(node.value, str) and TEXT.fullmatch(node.value) is not None)
        else:
            ok = isinstance(node, ARITHMETIC)
        if not ok:
            return False
    return True

"""One parsed file as the rules see it: the concrete syntax tree (LibCST), every node in order,
names resolved through imports and aliases, parents, positions, loops and a few file-wide
facts (does it train, which names are models). Never imports or runs the file."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import libcst as cst
from libcst.helpers import get_full_name_for_node
from libcst.metadata import (
    MetadataWrapper,
    PositionProvider,
    QualifiedNameProvider,
)

# Calls that turn gradients off for what runs inside them.
GRAD_OFF = {"torch.no_grad", "torch.inference_mode", "torch.set_grad_enabled",
            "torch.autograd.grad_mode.no_grad", "torch.autograd.grad_mode.inference_mode"}
# Methods that only an nn.Module (or something standing for one) has, called on a name.
MODULE_METHODS = {"parameters", "named_parameters", "state_dict", "load_state_dict", "eval",
                  "modules", "named_modules", "zero_grad"}
SCOPES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)


class _Collect(cst.CSTVisitor):
    """Every node of the tree in source order, and each node's parent (cheaper here than
    LibCST's ParentNodeProvider, which walks the tree again)."""

    def __init__(self) -> None:
        self.nodes: list[cst.CSTNode] = []
        self.parents: dict[cst.CSTNode, cst.CSTNode] = {}
        self._stack: list[cst.CSTNode] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        if self._stack:
            self.parents[node] = self._stack[-1]
        self.nodes.append(node)
        self._stack.append(node)
        return True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        self._stack.pop()


class Source:
    """A parsed file with the metadata and facts the rules share."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.module = cst.parse_module(text)
        self.wrapper = MetadataWrapper(self.module, unsafe_skip_copy=True)
        # One batched traversal for both (each alone walks the whole tree).
        resolved = self.wrapper.resolve_many([QualifiedNameProvider, PositionProvider])
        self._names = resolved[QualifiedNameProvider]
        self._positions = resolved[PositionProvider]
        collect = _Collect()
        self.module.visit(collect)
        self.nodes = collect.nodes
        self._parents = collect.parents
        # Results of other linters' visitors run on this file, by visitor class.
        self.visited: dict[type, cst.BatchableCSTVisitor] = {}
        self.calls = [n for n in self.nodes if isinstance(n, cst.Call)]

    # Names
    def qnames(self, node: cst.CSTNode) -> set[str]:
        """The qualified names a name, attribute or call's function stands for."""
        if isinstance(node, cst.Call):
            node = node.func
        names = self._names.get(node, ())
        return {q.name for q in (names() if callable(names) else names)}

    def is_call_to(self, call: cst.Call, names: set[str] | frozenset[str]) -> bool:
        return bool(self.qnames(call) & names)

    def calls_to(self, *names: str) -> list[cst.Call]:
        wanted = set(names)
        return [c for c in self.calls if self.is_call_to(c, wanted)]

    def method_calls(self, *attrs: str) -> list[cst.Call]:
        """Calls of the form `x.attr(...)`, for any receiver x."""
        return [c for c in self.calls
                if isinstance(c.func, cst.Attribute) and c.func.attr.value in attrs]

    @functools.cached_property
    def referenced(self) -> set[str]:
        """Every qualified name a name or attribute in the file stands for."""
        out: set[str] = set()
        for node in self.nodes:
            if isinstance(node, cst.Name | cst.Attribute):
                out |= self.qnames(node)
        return out

    def refers_to(self, *prefixes: str) -> bool:
        """Whether the file names anything that starts with one of these qualified names."""
        return any(q == p or q.startswith(p + ".") for q in self.referenced for p in prefixes)

    # Tree
    def parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self._parents.get(node)

    def ancestors(self, node: cst.CSTNode) -> Iterator[tuple[cst.CSTNode, cst.CSTNode]]:
        """(ancestor, the child of it on the way to node), innermost first."""
        child = node
        parent = self.parent(child)
        while parent is not None:
            yield parent, child
            child, parent = parent, self.parent(parent)

    def scope(self, node: cst.CSTNode) -> cst.FunctionDef | cst.Module:
        """The function a node is in, or the module."""
        for parent, _ in self.ancestors(node):
            if isinstance(parent, cst.FunctionDef):
                return parent
        return self.module

    def loops(self, node: cst.CSTNode) -> list[cst.For | cst.While]:
        """The for/while loops whose body holds node, innermost first, within its function."""
        out = []
        for parent, child in self.ancestors(node):
            if isinstance(parent, SCOPES):
                break
            if isinstance(parent, cst.For | cst.While) and child is parent.body:
                out.append(parent)
        return out

    def within(self, node: cst.CSTNode, outer: cst.CSTNode) -> Iterator[cst.CSTNode]:
        """The ancestors of node up to (not including) outer."""
        for parent, _ in self.ancestors(node):
            if parent is outer:
                return
            yield parent

    def contains(self, outer: cst.CSTNode, node: cst.CSTNode) -> bool:
        return any(parent is outer for parent, _ in self.ancestors(node))

    def position(self, node: cst.CSTNode) -> tuple[int, int]:
        """Line and column, both counted from 1."""
        start = self._positions[node].start
        return start.line, start.column + 1

    # Facts
    @functools.cached_property
    def backward_calls(self) -> list[cst.Call]:
        """`loss.backward()`, `fabric.backward(loss)`, `scaler.scale(loss).backward()`."""
        return self.method_calls("backward")

    @functools.cached_property
    def trains(self) -> bool:
        """Whether the file trains a model: it calls backward or defines a Lightning step."""
        return bool(self.backward_calls) or any(
            isinstance(n, cst.FunctionDef) and n.name.value == "training_step"
            for n in self.nodes)

    @functools.cached_property
    def module_classes(self) -> set[str]:
        """Classes defined here whose bases come from torch.nn or Lightning."""
        out = set()
        for node in self.nodes:
            if isinstance(node, cst.ClassDef) and any(
                    q.startswith(("torch.nn.", "lightning.", "pytorch_lightning."))
                    or q in {"L.LightningModule", "pl.LightningModule"}
                    for base in node.bases for q in self.qnames(base.value)):
                out.add(node.name.value)
        return out

    @functools.cached_property
    def model_names(self) -> set[str]:
        """Dotted names that stand for a model: receivers of nn.Module-only methods, and
        targets of a call to an nn.Module class defined here."""
        out = {name for c in self.method_calls(*MODULE_METHODS)
               if (name := get_full_name_for_node(c.func.value)) and name != "self"}
        for node in self.nodes:
            if (isinstance(node, cst.Assign) and isinstance(node.value, cst.Call)
                    and get_full_name_for_node(node.value.func) in self.module_classes):
                out |= {name for t in node.targets
                        if (name := get_full_name_for_node(t.target))}
        return out

    def grad_off(self, node: cst.CSTNode) -> bool:
        """Whether node runs with gradients off: inside `with torch.no_grad()` (or
        inference_mode), or in a function decorated with one."""
        for parent, _ in self.ancestors(node):
            if isinstance(parent, cst.With) and any(
                    self._grad_off_expr(item.item) for item in parent.items):
                return True
            if isinstance(parent, cst.FunctionDef) and any(
                    self._grad_off_expr(d.decorator) for d in parent.decorators):
                return True
        return False

    def _grad_off_expr(self, expr: cst.BaseExpression) -> bool:
        if isinstance(expr, cst.Call):
            if self.is_call_to(expr, {"torch.set_grad_enabled"}):
                return bool(expr.args) and _is_false(expr.args[0].value)
            return self.is_call_to(expr, GRAD_OFF)
        return bool(self.qnames(expr) & GRAD_OFF)

    def grad_off_blocks(self) -> list[cst.CSTNode]:
        """`with` statements and functions that turn gradients off."""
        return [n for n in self.nodes
                if (isinstance(n, cst.With) and any(self._grad_off_expr(i.item) for i in n.items))
                or (isinstance(n, cst.FunctionDef)
                    and any(self._grad_off_expr(d.decorator) for d in n.decorators))]


def _is_false(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "False"


def arg(call: cst.Call, name: str, position: int | None = None) -> cst.Arg | None:
    """The argument given by keyword `name`, or at `position` among the positional ones."""
    positional = [a for a in call.args if a.keyword is None and not a.star]
    for a in call.args:
        if a.keyword is not None and a.keyword.value == name:
            return a
    if position is not None and position < len(positional):
        return positional[position]
    return None


def unpacks(call: cst.Call) -> bool:
    """Whether the call passes `*args` or `**kwargs`: then any argument may be in there."""
    return any(a.star for a in call.args)


def literal(expr: cst.BaseExpression) -> object:
    """The value of an int, string or True/False/None literal; `...` (Ellipsis) when it is
    anything else, i.e. cannot be known here."""
    if isinstance(expr, cst.Integer | cst.SimpleString):
        return expr.evaluated_value
    if isinstance(expr, cst.Name) and expr.value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[expr.value]
    return ...

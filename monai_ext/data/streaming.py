"""Streaming datasets for batch inference: a failing item is recorded and skipped, the batch goes on.

:class:`SkipFailedDataset` applies the transform item by item while the DataLoader iterates (nothing is cached, so
memory does not grow with the number of files); an item whose loading or preprocessing raises is logged, recorded in
``failures`` (file, error type, message) and skipped. :class:`monai_ext.handlers.FailureReport` writes the list to
``failures.json`` and prints a summary when the run ends.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from monai_ext.data.validation import transform_error
from torch.utils.data import IterableDataset, get_worker_info

__all__ = ["SkipFailedDataset", "describe_item"]

logger = logging.getLogger(__name__)


def describe_item(item: Any) -> str:
    """The file an item stands for (``image`` entry, else the item itself), for failure reports."""
    if isinstance(item, dict):
        value = item.get("image", item.get("name", item))
        return str(value)
    return str(item)


class SkipFailedDataset(IterableDataset):
    """Iterate ``data`` through ``transform``, skipping (and recording) the items that raise.

    It has no length on purpose: the evaluator counts the items that do come out. With ``num_workers > 0`` the items
    are split between the workers and each worker writes its failures as JSON lines to ``failures_dir`` (required
    then), which :class:`monai_ext.handlers.FailureReport` merges.

    Args:
        data: records, e.g. ``[{"image": path, "text": report}, ...]``.
        transform: callable applied to each record (a ``Compose``).
        failures_dir: folder for per-worker failure files (``.failures-<pid>.jsonl``); optional with 0 workers.
        catch: exception types recorded and skipped; anything else stops the run.

    Attributes:
        failures: ``[{"index", "item", "error", "message"}, ...]`` recorded in this process.

    Example::

        dataset = SkipFailedDataset(records, transform=preprocessing)
        for sample in DataLoader(dataset, batch_size=1): ...
        print(dataset.failures)
    """

    def __init__(
        self,
        data: Sequence[Any],
        transform: Callable | None = None,
        failures_dir: str | None = None,
        catch: tuple[type[BaseException], ...] = (Exception,),
    ):
        super().__init__()
        self.data = data
        self.transform = transform
        self.failures_dir = failures_dir
        self.catch = catch
        self.failures: list[dict] = []

    def reset(self) -> None:
        """Forget recorded failures (a new run) and remove per-worker failure files."""
        self.failures = []
        for path in self.worker_failure_files():
            os.remove(path)

    def worker_failure_files(self) -> list[str]:
        if not self.failures_dir or not os.path.isdir(self.failures_dir):
            return []
        return sorted(
            os.path.join(self.failures_dir, name)
            for name in os.listdir(self.failures_dir)
            if name.startswith(".failures-") and name.endswith(".jsonl")
        )

    def all_failures(self) -> list[dict]:
        """Failures of this process and of the DataLoader workers, sorted by index."""
        found = list(self.failures)
        for path in self.worker_failure_files():
            with open(path, encoding="utf-8") as f:
                found.extend(json.loads(line) for line in f if line.strip())
        return sorted(found, key=lambda failure: failure["index"])

    def _record(self, index: int, item: Any, error: BaseException, in_worker: bool) -> None:
        error = transform_error(error)  # MONAI's Compose wraps it in RuntimeError("applying transform ...")
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        failure = {"index": index, "item": describe_item(item), "error": type(error).__name__, "message": message}
        logger.warning("Skipping item %d (%s): %s: %s", index, failure["item"], failure["error"], message)
        if in_worker:
            if not self.failures_dir:
                raise RuntimeError("SkipFailedDataset needs failures_dir when used with DataLoader workers.")
            os.makedirs(self.failures_dir, exist_ok=True)
            path = os.path.join(self.failures_dir, f".failures-{os.getpid()}.jsonl")
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(failure, ensure_ascii=False) + "\n")
        else:
            self.failures.append(failure)

    def __iter__(self):
        worker = get_worker_info()
        indices = range(len(self.data))
        if worker is not None:
            indices = indices[worker.id :: worker.num_workers]
        for index in indices:
            item = self.data[index]
            try:
                sample = self.transform(item) if self.transform is not None else item
            except self.catch as error:
                self._record(index, item, error, in_worker=worker is not None)
                continue
            yield sample

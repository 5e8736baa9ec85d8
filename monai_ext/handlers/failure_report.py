"""``failures.json`` and a summary of the items a skipping dataset left out."""

from __future__ import annotations

import logging
import os
from typing import Any

from ignite.engine import Engine, Events
from monai_ext.io import atomic_write_json

__all__ = ["FailureReport"]

logger = logging.getLogger(__name__)


class FailureReport:
    """Write ``<output_dir>/failures.json`` and log a summary of the items a
    :class:`monai_ext.data.SkipFailedDataset` skipped, when the engine completes (also when nothing failed, so a
    finished run always says so).

    Args:
        dataset: the :class:`~monai_ext.data.SkipFailedDataset` the engine iterates.
        output_dir: where ``failures.json`` goes.
        overwrite: replace an existing ``failures.json``.
        raise_on_failure: after writing, raise ``RuntimeError`` when anything failed (a non-zero exit for scripts).
            When every item failed it is raised anyway: a run that produced nothing must not look like a success.

    Example::

        FailureReport(dataset, output_dir="predictions").attach(evaluator)
    """

    def __init__(self, dataset: Any, output_dir: str, overwrite: bool = False, raise_on_failure: bool = False):
        self.dataset = dataset
        self.output_dir = output_dir
        self.overwrite = overwrite
        self.raise_on_failure = raise_on_failure
        self.failures: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _start(self, engine: Engine) -> None:
        path = os.path.join(self.output_dir, "failures.json")
        if not self.overwrite and os.path.lexists(path):
            raise FileExistsError(f"Output '{path}' already exists; set overwrite=True to replace it")
        self.dataset.reset()

    def _write(self, engine: Engine) -> None:
        self.failures = self.dataset.all_failures()
        processed = engine.state.iteration * (engine.state.batch_size if hasattr(engine.state, "batch_size") else 1)
        atomic_write_json(
            os.path.join(self.output_dir, "failures.json"),
            {"num_failed": len(self.failures), "failures": self.failures},
            overwrite=self.overwrite,
        )
        if self.failures:
            lines = "\n".join(f"  {f['item']}: {f['error']}: {f['message']}" for f in self.failures[:50])
            more = f"\n  ... and {len(self.failures) - 50} more" if len(self.failures) > 50 else ""
            logger.warning(
                "%d item(s) failed and were skipped (details in %s):\n%s%s",
                len(self.failures),
                os.path.join(self.output_dir, "failures.json"),
                lines,
                more,
            )
        else:
            logger.info("All items processed (%d iterations), no failure.", processed)
        nothing_done = engine.state.iteration == 0
        if self.failures and (self.raise_on_failure or nothing_done):
            first = self.failures[0]
            every = "every one of the " if nothing_done else ""
            raise RuntimeError(
                f"{every}{len(self.failures)} item(s) failed (first: {first['item']}: {first['message']}); see "
                f"{self.output_dir}/failures.json"
            )

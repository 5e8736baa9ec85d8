"""Progress over the items of a run whose loader has no length."""

from __future__ import annotations

from typing import Any

from ignite.engine import Engine, Events

__all__ = ["ItemProgressBar"]


class ItemProgressBar:
    """A progress bar over the items of a run whose loader has no length, such as a
    :class:`~monai_ext.data.SkipFailedDataset` (ignite's ``ProgressBar`` can only show ``[n/?]`` there).

    Skipped items count as done, so the bar reaches ``total`` when the run ends.

    Args:
        total: number of items the run will meet (the datalist's length).
        dataset: the skipping dataset, whose ``failures`` are counted (main process; ``num_workers=0``).
        desc: the bar's label.

    Example::

        ItemProgressBar(total=len(records), dataset=dataset).attach(evaluator)
    """

    def __init__(self, total: int, dataset: Any = None, desc: str = "images"):
        self.total = int(total)
        self.dataset = dataset
        self.desc = desc
        self.done = 0
        self._bar: Any = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._update)
        engine.add_event_handler(Events.COMPLETED, self._close)

    def _start(self, engine: Engine) -> None:
        from tqdm import tqdm

        self.done = 0
        self._bar = tqdm(total=self.total, desc=self.desc, unit="image", leave=False)

    def _update(self, engine: Engine) -> None:
        batch_size = getattr(engine.state.dataloader, "batch_size", None) or 1
        skipped = len(getattr(self.dataset, "failures", []) or [])
        self.done = min(self.total, engine.state.iteration * batch_size + skipped)
        if self._bar is not None:
            self._bar.update(self.done - self._bar.n)

    def _close(self, engine: Engine) -> None:
        self._update(engine)
        if self._bar is not None:
            self._bar.close()

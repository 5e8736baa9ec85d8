"""Each training epoch's throughput and the share of time spent waiting for data."""

from __future__ import annotations

import logging
import time

import torch
from ignite.engine import Engine, Events

__all__ = ["LoaderWaitMonitor"]

logger = logging.getLogger(__name__)


class LoaderWaitMonitor:
    """Log each epoch's images per second and the share of the epoch spent waiting for the DataLoader.

    A share near 0 means the network is the bottleneck; a large share means the data pipeline is (raise
    ``num_workers``, keep ``cache_rate`` at 1). The epoch is timed from ``EPOCH_STARTED`` to its last
    ``ITERATION_COMPLETED``, so epoch-end work such as validation is not counted; waiting is the time between
    ``GET_BATCH_STARTED`` and ``GET_BATCH_COMPLETED``. The first epoch includes DataLoader worker start-up. Under
    ``torchrun`` figures are per process and only rank 0 logs them.

    Every epoch's figures are kept in ``epochs`` as ``{"epoch", "images", "seconds", "images_per_s", "wait_seconds",
    "wait_fraction"}``.

    Args:
        image_key: batch key whose first dimension counts the images.
        log: write one line per epoch to the ``monai_ext.handlers`` logger.

    Example::

        monitor = LoaderWaitMonitor()
        monitor.attach(trainer)
        trainer.run()
        monitor.epochs[-1]["wait_fraction"]  # e.g. 0.03: the loader keeps up
    """

    def __init__(self, image_key: str = "image", log: bool = True):
        self.image_key = image_key
        self.log = log
        self.epochs: list[dict[str, float]] = []
        self._epoch_start = self._batch_start = self._last_iteration = 0.0
        self._wait = 0.0
        self._images = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._start_epoch)
        engine.add_event_handler(Events.GET_BATCH_STARTED, self._start_batch)
        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self._got_batch)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._end_iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._end_epoch)

    def _start_epoch(self, engine: Engine) -> None:
        self._epoch_start = self._last_iteration = time.perf_counter()
        self._wait = 0.0
        self._images = 0

    def _start_batch(self, engine: Engine) -> None:
        self._batch_start = time.perf_counter()

    def _got_batch(self, engine: Engine) -> None:
        self._wait += time.perf_counter() - self._batch_start
        batch = engine.state.batch
        images = batch.get(self.image_key) if isinstance(batch, dict) else None
        self._images += len(images) if images is not None else 1

    def _end_iteration(self, engine: Engine) -> None:
        self._last_iteration = time.perf_counter()

    def _end_epoch(self, engine: Engine) -> None:
        seconds = max(self._last_iteration - self._epoch_start, 1e-9)
        record = {
            "epoch": engine.state.epoch,
            "images": self._images,
            "seconds": seconds,
            "images_per_s": self._images / seconds,
            "wait_seconds": self._wait,
            "wait_fraction": min(self._wait / seconds, 1.0),
        }
        self.epochs.append(record)
        if self.log and (not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0):
            logger.info(
                "Epoch %d: %.1f images/s, %.0f%% of the time waiting for data (%d images in %.1f s)",
                record["epoch"],
                record["images_per_s"],
                100 * record["wait_fraction"],
                record["images"],
                seconds,
            )

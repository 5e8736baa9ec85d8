"""Each epoch's text-cache figures: entries, memory against the bound, hit rate."""

from __future__ import annotations

import logging

import torch.distributed as dist
import torch.nn as nn
from ignite.engine import Engine, Events
from monai_ext.text.cache import TextEmbeddingCache

__all__ = ["TextCacheStatsHandler", "text_caches"]

logger = logging.getLogger(__name__)


def text_caches(network: nn.Module) -> dict[str, TextEmbeddingCache]:
    """The text-embedding caches of ``network``'s modules (``ClipTextEncoder.cache``), by module name."""
    return {
        name or "network": module.cache
        for name, module in network.named_modules()
        if isinstance(getattr(module, "cache", None), TextEmbeddingCache)
    }


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.1f} KiB"


class TextCacheStatsHandler:
    """At the end of every epoch, log each text cache's entries, bytes held (against its bound) and the epoch's hit
    rate, then start the counts anew.

    A hit rate that stays low after the first epoch, or evictions in every epoch, mean that the bound
    (``text_cache_max_bytes``) is smaller than the distinct texts the process meets. Under ``torchrun`` each process
    has its own cache, holding the texts of its share of the data; each logs its own line, tagged with its rank.

    Every epoch's figures are kept in ``epochs`` as ``{"epoch", "cache", "entries", "bytes", "max_bytes", "hits",
    "misses", "evictions", "hit_rate"}`` (one record per cache).

    Args:
        network: the network (or a ``DistributedDataParallel`` wrapper) whose caches are read.
        log: write one line per cache and epoch to the ``monai_ext.handlers`` logger.

    Example::

        stats = TextCacheStatsHandler(network)
        stats.attach(trainer)
        trainer.run()
        stats.epochs[-1]["hit_rate"]  # e.g. 1.0 once every report has been met
    """

    def __init__(self, network: nn.Module, log: bool = True) -> None:
        self.caches = text_caches(network)
        self.log = log
        self.epochs: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._start_epoch)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._end_epoch)

    def _start_epoch(self, engine: Engine) -> None:
        for cache in self.caches.values():
            cache.reset_counters()

    def _end_epoch(self, engine: Engine) -> None:
        rank = f" rank {dist.get_rank()}" if dist.is_available() and dist.is_initialized() else ""
        for name, cache in self.caches.items():
            record = {"epoch": engine.state.epoch, "cache": name, **cache.stats()}
            self.epochs.append(record)
            if not self.log:
                continue
            bound = "no bound" if record["max_bytes"] is None else f"of {record['max_bytes'] / 2**20:.0f} MiB"
            rate = "no lookups" if record["hit_rate"] is None else f"hit rate {100 * record['hit_rate']:.1f}%"
            held = _size(record["bytes"])
            logger.info(
                "Epoch %d%s, text cache %s: %d entries, %s %s, %s (%d hits, %d misses), %d evicted",
                record["epoch"], rank, name, record["entries"], held, bound, rate,
                record["hits"], record["misses"], record["evictions"],
            )  # fmt: skip

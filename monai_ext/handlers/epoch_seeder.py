"""Randomness that is a function of (seed, epoch), so that a replayed epoch draws the same batches.

:class:`EpochSeeder` re-seeds ``torch``/``numpy``/``random``, the random state of the data transforms
(``Compose.set_random_state``), the DataLoader's shuffle generator and a sampler's ``set_epoch`` at every
``Events.EPOCH_STARTED`` from ``(seed, epoch)``, and under ``torch.distributed`` from ``(seed, epoch, rank)``. Replaying an
interrupted epoch from its start therefore draws the same batches and augmentations (on CPU; GPU kernels may add
non-determinism of their own), while the ranks of one run draw different augmentations."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

__all__ = ["epoch_seed", "EpochSeeder"]


_MAX_SEED = 2**31 - 1


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed used for ``epoch`` (1-based, as ignite counts) of a run seeded with ``seed``, on process ``rank``.

    Rank 0 draws what a single-process run draws, so adding processes leaves its stream (and earlier results) as they
    were; every other rank gets a stream of its own."""
    entropy = [int(seed), int(epoch)] + ([int(rank)] if rank else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0]) % _MAX_SEED


def _process_rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


class EpochSeeder:
    """Make every epoch's randomness a function of ``(seed, epoch)`` by re-seeding at ``Events.EPOCH_STARTED``.

    Re-seeds ``torch``, ``numpy`` and ``random`` (``monai.utils.set_determinism``), the given transforms
    (``set_random_state``, e.g. the training ``Compose``), and of the DataLoader its ``generator`` (shuffle order) and
    its sampler's ``set_epoch`` when it has one (``DistributedSampler``, whose shuffle stays common to the ranks).
    Each process seeds from ``(seed, epoch, rank)``: otherwise every rank would draw the same augmentation for its k-th
    item of an epoch, and ``N`` processes would see only one process's variety of augmentations.

    Args:
        seed: the run's seed; ``None`` disables the handler.
        transforms: a transform or a list of transforms with ``set_random_state`` (a ``Compose``).
        dataloader: the training DataLoader.
        rank: this process's rank; default: ``torch.distributed``'s rank when a process group is initialised (read at
            every epoch start, as the group may be set up after the handler), else 0.

    Example::

        EpochSeeder(seed=0, transforms=train_compose, dataloader=train_loader).attach(trainer)
    """

    def __init__(self, seed: int | None, transforms: Any = None, dataloader: Any = None, rank: int | None = None):
        self.seed = seed
        self.rank = rank
        if transforms is None:
            transforms = []
        self.transforms = list(transforms) if isinstance(transforms, (list, tuple)) else [transforms]
        self.dataloader = dataloader

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if self.seed is None:
            return
        from monai.utils import set_determinism

        epoch = engine.state.epoch
        seed = epoch_seed(self.seed, epoch, _process_rank() if self.rank is None else self.rank)
        set_determinism(seed=seed)
        for i, transform in enumerate(self.transforms):
            transform.set_random_state(seed=(seed + 7919 * (i + 1)) % _MAX_SEED)
        loader = self.dataloader
        if loader is not None:
            generator = getattr(loader, "generator", None)
            if isinstance(generator, torch.Generator):
                generator.manual_seed(seed)
            sampler = getattr(loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)

"""Resumable, reproducible training: a trainer checkpoint written atomically at the end of each epoch, loaded again at
start when ``resume`` is on, and randomness that is a function of (seed, epoch).

Design:

* :class:`TrainerCheckpoint` saves ``{"trainer": engine.state_dict(), <save_dict objects>, "rng": ...}`` to
  ``<save_dir>/trainer.pt`` (atomically, replacing the previous one) every ``save_interval`` epochs, after the
  validation handler of that epoch has run (attach it after ``ValidationHandler``). With ``resume=True`` and an
  existing file it loads everything back at ``Events.STARTED`` (with ``weights_only=True``), so the trainer continues
  at the next epoch; the model, optimizer (and scheduler, best-model saver, ... when listed in ``save_dict``) are
  restored as they were at the end of the saved epoch.
* :class:`EpochSeeder` re-seeds ``torch``/``numpy``/``random``, the random state of the data transforms
  (``Compose.set_random_state``), the DataLoader's shuffle generator and a sampler's ``set_epoch`` at every
  ``Events.EPOCH_STARTED`` from ``(seed, epoch)``. Replaying an interrupted epoch from its start therefore draws the
  same batches and augmentations, and a run killed mid-epoch and resumed ends with the same weights as an
  uninterrupted one (on CPU; GPU kernels may add non-determinism of their own).

A run killed in the middle of epoch ``k`` loses the partial epoch: it restarts from the end of epoch ``k - 1``.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_ext.utils.flags import ensure_flag
from monai_ext.utils.io import CheckpointError, atomic_save, safe_torch_load

__all__ = ["TrainerCheckpoint", "EpochSeeder", "epoch_seed"]

logger = logging.getLogger(__name__)

_MAX_SEED = 2**31 - 1


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed used for ``epoch`` (1-based, as ignite counts) of a run seeded with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0]) % _MAX_SEED


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [int(v) for v in random.getstate()[1]],
        "python_version": int(random.getstate()[0]),
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    random.setstate((state["python_version"], tuple(state["python"]), None))


class TrainerCheckpoint:
    """Save (and with ``resume`` load) the full training state so that a killed run continues where it stopped.

    Args:
        save_dir: folder of ``trainer.pt`` (separate from the released ``model.pt``).
        save_dict: objects with ``state_dict``/``load_state_dict`` to keep, e.g. ``{"model": net, "optimizer": opt}``
            (add ``"lr_scheduler"``, the best-model ``CheckpointSaver``, ... as used). The AMP loss scaler of a MONAI
            trainer (``engine.scaler``) is kept without being listed, so a resumed mixed-precision run does not restart
            from the initial loss scale.
        resume: load ``trainer.pt`` at start when it exists; otherwise a run starts from scratch (and an existing
            trainer checkpoint is replaced at the end of its first epoch).
        save_interval: save every N epochs (the last epoch is always saved).
        filename: file name in ``save_dir``.
        map_location: where loaded tensors go.
        save_enabled: write checkpoints (``False`` on the non-zero ranks of a multi-GPU run, which only load).

    Raises (at start, with ``resume``):
        CheckpointError: the file is corrupt, not a plain checkpoint, or lacks an entry of ``save_dict`` (the message
            names the file and the entry).

    Example::

        TrainerCheckpoint("models/trainer", {"model": net, "optimizer": opt}, resume=True).attach(trainer)
    """

    def __init__(
        self,
        save_dir: str,
        save_dict: Mapping[str, Any],
        resume: bool = False,
        save_interval: int = 1,
        filename: str = "trainer.pt",
        map_location: str | torch.device = "cpu",
        save_enabled: bool = True,
    ):
        if {"trainer", "rng", "amp_scaler"} & set(save_dict):
            raise ValueError("save_dict keys 'trainer', 'rng' and 'amp_scaler' are reserved for the trainer state.")
        if save_interval < 1:
            raise ValueError(f"save_interval must be >= 1, got {save_interval}.")
        self.save_dir = os.fspath(save_dir)
        self.save_dict = dict(save_dict)
        self.resume = ensure_flag(resume, "resume")
        self.save_interval = int(save_interval)
        self.path = os.path.join(self.save_dir, filename)
        self.map_location = map_location
        self.save_enabled = bool(save_enabled)
        self.resumed_from: int | None = None

    def attach(self, engine: Engine) -> None:
        # Loading must come before any other STARTED handler looks at the epoch counter.
        engine.add_event_handler(Events.STARTED, self.load)
        handlers = engine._event_handlers[Events.STARTED]
        handlers.insert(0, handlers.pop())
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)

    def save(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        if not self.save_enabled:
            return
        if epoch % self.save_interval and epoch != engine.state.max_epochs:
            return
        checkpoint = {"trainer": {**engine.state_dict(), "epoch": epoch}, "rng": _rng_state()}
        for key, obj in self.save_dict.items():
            checkpoint[key] = obj.state_dict()
        scaler = _amp_scaler(engine)
        if scaler is not None:
            checkpoint["amp_scaler"] = scaler.state_dict()
        atomic_save(checkpoint, self.path, overwrite=True)
        logger.info("Trainer checkpoint of epoch %d written to %s", epoch, self.path)

    def load(self, engine: Engine) -> None:
        self.resumed_from = None
        if not self.resume:
            return
        if not os.path.exists(self.path):
            logger.info("resume: no trainer checkpoint at %s, starting from scratch.", self.path)
            return
        checkpoint = safe_torch_load(self.path, map_location=self.map_location)
        if not isinstance(checkpoint, Mapping) or "trainer" not in checkpoint:
            raise CheckpointError(f"Trainer checkpoint '{self.path}' has no 'trainer' entry: not written by TrainerCheckpoint.")
        missing = [key for key in self.save_dict if key not in checkpoint]
        if missing:
            raise CheckpointError(
                f"Trainer checkpoint '{self.path}' lacks {missing} (it holds {sorted(checkpoint)}); resume from a "
                "checkpoint written with the same save_dict, or switch resume off."
            )
        for key, obj in self.save_dict.items():
            try:
                obj.load_state_dict(checkpoint[key])
            except (RuntimeError, KeyError, ValueError) as error:
                raise CheckpointError(
                    f"Trainer checkpoint '{self.path}': entry '{key}' does not fit this run: "
                    f"{str(error).splitlines()[0]}"
                ) from error
        scaler = _amp_scaler(engine)
        if scaler is not None and "amp_scaler" in checkpoint:
            scaler.load_state_dict(checkpoint["amp_scaler"])
        state = checkpoint["trainer"]
        max_epochs = engine.state.max_epochs  # the configured run length wins over the saved one
        engine.state.epoch = int(state["epoch"]) if "epoch" in state else int(state["iteration"]) // int(
            state["epoch_length"]
        )
        engine.state.iteration = int(state["iteration"])
        engine.state.max_epochs = max_epochs
        if "rng" in checkpoint:
            _set_rng_state(checkpoint["rng"])
        self.resumed_from = engine.state.epoch
        logger.warning(
            "Resuming from %s: epoch %d of %s done (iteration %d).",
            self.path,
            engine.state.epoch,
            max_epochs,
            engine.state.iteration,
        )


def _amp_scaler(engine: Engine):
    """The enabled ``GradScaler`` of a MONAI trainer with ``amp=True``, else None."""
    scaler = getattr(engine, "scaler", None)
    return scaler if scaler is not None and scaler.is_enabled() else None


class EpochSeeder:
    """Make every epoch's randomness a function of ``(seed, epoch)`` by re-seeding at ``Events.EPOCH_STARTED``.

    Re-seeds ``torch``, ``numpy`` and ``random`` (``monai.utils.set_determinism``), the given transforms
    (``set_random_state``, e.g. the training ``Compose``), and of the DataLoader its ``generator`` (shuffle order) and
    its sampler's ``set_epoch`` when it has one (``DistributedSampler``).

    Args:
        seed: the run's seed; ``None`` disables the handler.
        transforms: a transform or a list of transforms with ``set_random_state`` (a ``Compose``).
        dataloader: the training DataLoader.

    Example::

        EpochSeeder(seed=0, transforms=train_compose, dataloader=train_loader).attach(trainer)
    """

    def __init__(self, seed: int | None, transforms: Any = None, dataloader: Any = None):
        self.seed = seed
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
        seed = epoch_seed(self.seed, epoch)
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

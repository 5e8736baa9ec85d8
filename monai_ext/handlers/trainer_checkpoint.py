"""Resumable training: the trainer state written atomically at the end of each epoch and loaded again at start when
``resume`` is on.

:class:`TrainerCheckpoint` saves ``{"trainer": engine.state_dict(), <save_dict objects>, "rng": ...}`` to
``<save_dir>/trainer.pt`` (atomically, replacing the previous one) every ``save_interval`` epochs, after the validation
handler of that epoch has run (attach it after ``ValidationHandler``). With ``resume=True`` and an existing file it
loads everything back at ``Events.STARTED`` (with ``weights_only=True``), so the trainer continues at the next epoch;
the model, optimizer (and scheduler, best-model saver, ... when listed in ``save_dict``) are restored as they were at
the end of the saved epoch. A run killed in the middle of epoch ``k`` loses the partial epoch: it restarts from the end
of epoch ``k - 1``. Together with :class:`~monai_ext.handlers.EpochSeeder` the resumed run ends with the same weights as
an uninterrupted one."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai_ext.checkpoint import CheckpointError, safe_torch_load
from monai_ext.io import atomic_save

__all__ = ["TrainerCheckpoint"]

logger = logging.getLogger(__name__)


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
            (add ``"lr_scheduler"``, the best-model ``CheckpointSaver``, ... as used); an entry whose object is
            ``None`` (a component switched off with ``_disabled_``) is left out. The AMP loss scaler of a MONAI
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
        self.save_dict = {key: obj for key, obj in save_dict.items() if obj is not None}
        self.resume = resume
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
            raise CheckpointError(
                f"Trainer checkpoint '{self.path}' has no 'trainer' entry: not written by TrainerCheckpoint."
            )
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
        engine.state.epoch = (
            int(state["epoch"]) if "epoch" in state else int(state["iteration"]) // int(state["epoch_length"])
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

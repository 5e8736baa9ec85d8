"""Network weights loaded at the start of a run through the one safe checkpoint reader."""

from __future__ import annotations

import logging

import torch
from ignite.engine import Engine, Events
from monai_ext.checkpoint import BUNDLE_WEIGHTS_HINT, load_state_dict_checked

__all__ = ["CheckedCheckpointLoader"]

logger = logging.getLogger(__name__)


class CheckedCheckpointLoader:
    """Load network weights at ``Events.STARTED`` with :func:`monai_ext.checkpoint.load_state_dict_checked`.

    Unlike MONAI's ``CheckpointLoader`` a checkpoint of another network, a file that is not a state dict, a pickle of
    Python objects or a truncated download is refused with a :class:`~monai_ext.checkpoint.CheckpointError` naming the
    file and the problem (read with ``weights_only=True``; DDP's ``module.`` prefix is removed).

    Args:
        load_path: checkpoint file (a state dict, or a dict holding one under ``model``/``state_dict``/...).
        network: the module to load into.
        strict: refuse missing/unexpected keys.
        expected_network: name a checkpoint's ``"network"`` entry must have (default: the network's class name).

    Example::

        CheckedCheckpointLoader("models/model.pt", network=net).attach(evaluator)
    """

    def __init__(
        self, load_path: str, network: torch.nn.Module, strict: bool = True, expected_network: str | None = None
    ):
        self.load_path = load_path
        self.network = network
        self.strict = strict
        self.expected_network = expected_network

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        module = getattr(self.network, "module", self.network)  # DistributedDataParallel
        expected = self.expected_network or type(module).__name__
        load_state_dict_checked(
            module, self.load_path, strict=self.strict, expected_network=expected, missing_hint=BUNDLE_WEIGHTS_HINT
        )
        logger.info("Loaded weights from %s into %s", self.load_path, expected)

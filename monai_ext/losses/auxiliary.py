"""Segmentation loss plus a network's own auxiliary term computed from its last forward pass."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["WithAuxiliaryLoss"]


class WithAuxiliaryLoss(nn.Module):
    """``seg_loss(pred, label) + weight * network.<aux_method>(label)``.

    MONAI's trainers call ``loss_function(pred, label)`` only, while alignment terms need the network's intermediate
    embeddings. The networks (TGC-Net, VLSA-Net) keep those from their last forward and expose a method that turns them
    into a loss given the label; this wrapper adds it. Pass the bare module (``network_def``), not a DDP wrapper.

    Args:
        seg_loss: the segmentation loss on logits.
        network: module with the auxiliary method.
        weight: weight of the auxiliary term; 0 switches it off (the method is then not called).
        aux_method: name of the network method taking the label.

    Example::

        loss = WithAuxiliaryLoss(DiceBCELoss(), network=net, weight=0.1)
        value = loss(net(image, tokens), label)
    """

    def __init__(
        self, seg_loss: nn.Module, network: nn.Module, weight: float = 0.1, aux_method: str = "alignment_loss"
    ):
        super().__init__()
        if not callable(getattr(network, aux_method, None)):
            raise ValueError(f"{type(network).__name__} has no method '{aux_method}' for the auxiliary loss.")
        self.seg_loss = seg_loss
        # Stored outside the module registry: the network's parameters belong to the model, not to the loss.
        self.__dict__["network"] = network
        self.weight = float(weight)
        self.aux_method = aux_method

    def forward(self, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        loss = self.seg_loss(pred, label)
        if self.weight:
            loss = loss + self.weight * getattr(self.network, self.aux_method)(label)
        return loss

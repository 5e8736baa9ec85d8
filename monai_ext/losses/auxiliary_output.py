"""A segmentation loss plus a weighted auxiliary loss on other outputs of the same network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
from torch.nn.modules.loss import _Loss

__all__ = ["AuxiliaryOutputLoss"]


class AuxiliaryOutputLoss(_Loss):
    """``seg_loss(pred[pred_key], label) + weight * aux_loss(*[pred[k] for k in aux_keys], label)``.

    Networks with auxiliary outputs (``TGCNet``, ``VLSANet``) return a dict of tensors in training mode and the logits
    alone in eval mode, as MONAI's HoVerNet does for ``HoVerNetLoss``. MONAI's trainers call
    ``loss_function(pred, label)``; this loss takes either form: a tensor gets the segmentation term only, a dict the
    segmentation term on its ``pred_key`` entry plus the weighted auxiliary term on its ``aux_keys`` entries.

    Args:
        seg_loss: the segmentation loss on the logits.
        aux_loss: the auxiliary loss, called with the ``aux_keys`` entries in that order, then the label; ``None``:
            no auxiliary term.
        weight: weight of the auxiliary term; 0 switches it off (``aux_loss`` is then not called).
        aux_keys: the entries of the network's output that ``aux_loss`` takes.
        pred_key: the entry holding the logits.

    Raises (when called):
        KeyError: the output lacks ``pred_key`` or, with the auxiliary term on, one of ``aux_keys`` (e.g. ``TGCNet``
            built with ``use_vlcm=False`` has no ``"similarity"``: set ``weight`` to 0 for it).

    Example::

        loss_fn = AuxiliaryOutputLoss(DiceBCELoss(), SimilarityMapLoss(), weight=0.1, aux_keys=["similarity"])
        loss = loss_fn(tgcnet.train()(image, tokens), label)  # Dice-BCE + 0.1 * similarity-map BCE
    """

    def __init__(
        self,
        seg_loss: nn.Module,
        aux_loss: nn.Module | None = None,
        weight: float = 0.1,
        aux_keys: Sequence[str] = (),
        pred_key: str = "pred",
    ) -> None:
        super().__init__()
        aux_keys = (aux_keys,) if isinstance(aux_keys, str) else tuple(aux_keys)
        if aux_loss is not None and not aux_keys:
            raise ValueError("AuxiliaryOutputLoss with an aux_loss needs the output entries it takes (aux_keys).")
        self.seg_loss = seg_loss
        self.aux_loss = aux_loss
        self.weight = float(weight)
        self.aux_keys = aux_keys
        self.pred_key = pred_key

    def forward(self, pred: torch.Tensor | Mapping[str, torch.Tensor], label: torch.Tensor) -> torch.Tensor:
        if not isinstance(pred, Mapping):
            return self.seg_loss(pred, label)
        with_aux = self.aux_loss is not None and self.weight != 0
        needed = [self.pred_key, *self.aux_keys] if with_aux else [self.pred_key]
        missing = [key for key in needed if key not in pred]
        if missing:
            raise KeyError(
                f"AuxiliaryOutputLoss needs the output entries {missing}, but the network returned {list(pred)}; "
                "for a network without them switch the auxiliary term off (weight=0)."
            )
        loss = self.seg_loss(pred[self.pred_key], label)
        if with_aux:
            loss = loss + self.weight * self.aux_loss(*[pred[key] for key in self.aux_keys], label)
        return loss

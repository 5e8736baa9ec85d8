"""Dice + binary cross-entropy on the logits of a single-channel (binary) segmentation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.losses import DiceLoss

__all__ = ["DiceBCELoss"]


class DiceBCELoss(nn.Module):
    """``dice_weight * Dice(sigmoid(logits), label) + bce_weight * BCEWithLogits(logits, label)`` for one channel.

    Why not ``monai.losses.DiceCELoss``: MONAI before 1.3 (Project-MONAI/MONAI#6923, fixed by #6924) computed the CE
    term with ``nn.CrossEntropyLoss``, i.e. a softmax over the channel axis, which is identically 0 for a single
    channel; released text-guided segmentation code (LanGuideMedSeg/GuideDecoder, pinned to MONAI 1.0.1) therefore
    trained with Dice only. The installed MONAI (>= 1.5) switches to ``BCEWithLogitsLoss`` for one channel, so the
    sum is the same as ``DiceCELoss(sigmoid=True)`` here; this class stays because it (1) states the binary, on-logits
    contract explicitly and rejects multi-channel input instead of silently changing behaviour, and (2) applies
    ``pos_weight`` to the BCE term only, whereas ``DiceCELoss(weight=...)`` feeds the same tensor to Dice and BCE.

    Args:
        dice_weight: weight of the Dice term (>= 0).
        bce_weight: weight of the BCE term (>= 0).
        smooth_nr: Dice numerator smoothing (MONAI ``DiceLoss``).
        smooth_dr: Dice denominator smoothing.
        batch: compute Dice over the whole batch (sums of intersections over all images) instead of per image.
        pos_weight: weight of positive pixels in BCE (a number, or a sequence/tensor broadcastable to the channel),
            e.g. ``n_negative / n_positive`` for small lesions.

    Inputs: ``logits`` [B, 1, H, W(, D)] (raw network output, no sigmoid) and ``label`` of the same shape with values in
    {0, 1} (soft labels in [0, 1] are accepted). Output: a scalar tensor.

    Example::

        loss_fn = DiceBCELoss()
        loss = loss_fn(net(images), labels)  # logits [B, 1, H, W], labels [B, 1, H, W]
    """

    def __init__(
        self,
        dice_weight: float = 1.0,
        bce_weight: float = 1.0,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        pos_weight: float | Sequence[float] | torch.Tensor | None = None,
    ):
        super().__init__()
        if dice_weight < 0 or bce_weight < 0:
            raise ValueError(
                f"DiceBCELoss weights must be >= 0, got dice_weight={dice_weight}, bce_weight={bce_weight}."
            )
        self.dice_weight = float(dice_weight)
        self.bce_weight = float(bce_weight)
        self.dice = DiceLoss(sigmoid=True, smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch)
        if pos_weight is not None:
            pos_weight = torch.as_tensor(pos_weight, dtype=torch.float32).reshape(-1)
            if pos_weight.numel() != 1:
                raise ValueError(
                    f"DiceBCELoss is single-channel: pos_weight needs one value, got {pos_weight.numel()}."
                )
        # A buffer follows .to(device); not persistent because it is configuration, not a learned state.
        self.register_buffer("pos_weight", pos_weight, persistent=False)

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if logits.ndim < 3 or logits.shape[1] != 1:
            raise ValueError(
                f"DiceBCELoss expects single-channel logits [B, 1, spatial...], got shape {tuple(logits.shape)}; "
                "use monai.losses.DiceCELoss(softmax=True, to_onehot_y=True) for multi-class outputs."
            )
        if label.shape != logits.shape:
            raise ValueError(
                f"DiceBCELoss: label shape {tuple(label.shape)} differs from logits {tuple(logits.shape)}."
            )
        label = label.to(dtype=logits.dtype)
        pos_weight = None if self.pos_weight is None else self.pos_weight.to(logits.dtype)
        bce = nn.functional.binary_cross_entropy_with_logits(logits, label, pos_weight=pos_weight)
        return self.dice_weight * self.dice(logits, label) + self.bce_weight * bce

"""Alignment of a coarse pixel-text similarity map with the segmentation mask (TGC-Net's VLCM term)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

__all__ = ["SimilarityMapLoss"]


class SimilarityMapLoss(_Loss):
    """Binary cross-entropy between similarity logits on a coarse grid and the mask's foreground fraction per cell.

    The target of each cell is the fraction of foreground pixels of the mask under it (area average pooling to the
    map's grid, e.g. the 1/16 patches of a ViT), so the pixel-text similarity is pulled up where the report's findings
    are and down elsewhere; cells on a border get soft targets instead of a hard majority.

    Inputs:
        similarity: logits ``[B, 1, h, w]`` (e.g. ``TGCNet``'s training output ``"similarity"``).
        label: binary mask ``[B, 1, H, W]`` with values in {0, 1}.

    Returns:
        Scalar loss (mean over cells).

    Example::

        loss = SimilarityMapLoss()
        value = loss(torch.randn(2, 1, 14, 14), (torch.rand(2, 1, 224, 224) > 0.5).float())
    """

    def forward(self, similarity: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if similarity.ndim != 4 or label.ndim != 4 or similarity.shape[:2] != label.shape[:2]:
            raise ValueError(
                f"similarity [B, C, h, w] and label [B, C, H, W] must agree in batch and channels; got "
                f"{tuple(similarity.shape)} and {tuple(label.shape)}."
            )
        target = F.adaptive_avg_pool2d(label.float(), similarity.shape[-2:])
        return F.binary_cross_entropy_with_logits(similarity.float(), target)

"""Pixel-text alignment loss: each pixel embedding is classified among the class text embeddings by cosine."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

__all__ = ["PixelTextAlignmentLoss", "downsample_label_majority"]

# Target value excluded by F.cross_entropy (its default ignore_index).
_IGNORED = -100


def downsample_label_majority(
    label: torch.Tensor, size: tuple[int, int], num_classes: int, ignore_index: int | None = None
) -> torch.Tensor:
    """Index map ``[B, H, W]`` -> ``[B, h, w]`` holding, per output cell, the class covering most of its area.

    Pixels equal to ``ignore_index`` count as their own category: a cell where they are the majority becomes ``-100``
    (ignored by ``F.cross_entropy``). When ``(h, w)`` is larger than ``(H, W)`` the map is upsampled by nearest
    neighbour instead.
    """
    valid = torch.ones_like(label, dtype=torch.bool) if ignore_index is None else label != ignore_index
    bad = valid & ((label < 0) | (label >= num_classes))
    if bad.any():
        found = sorted({int(v) for v in label[bad].unique()[:5]})
        raise ValueError(
            f"Label values {found} are outside [0, {num_classes - 1}] for {num_classes} class embeddings"
            + ("" if ignore_index is None else f" (ignore_index={ignore_index})")
            + "."
        )
    # One extra channel collects ignored pixels so that they compete for the majority like a class.
    one_hot = F.one_hot(torch.where(valid, label, num_classes).long(), num_classes + 1)
    one_hot = one_hot.permute(0, 3, 1, 2).float()
    if size[0] <= label.shape[-2] and size[1] <= label.shape[-1]:
        one_hot = F.adaptive_avg_pool2d(one_hot, size)
    else:
        one_hot = F.interpolate(one_hot, size=size, mode="nearest")
    target = one_hot.argmax(dim=1)
    return target.masked_fill(target == num_classes, _IGNORED)


class PixelTextAlignmentLoss(_Loss):
    """Cross-entropy of every pixel embedding over its cosine similarities to the class text embeddings.

    ``logits[b, k, y, x] = cos(pixel_embeddings[b, :, y, x], class_embeddings[k]) / temperature`` and the target is
    the pixel's class, so each pixel is pulled toward the text of its own class and pushed away from the others (an
    InfoNCE over classes). The label is brought to the embedding resolution by area majority (see
    :func:`downsample_label_majority`), so patch-level embeddings (e.g. ViT 1/16 grids) are supervised by the class
    covering most of each patch.

    Args:
        temperature: softmax temperature of the cosine similarities (CLIP's 0.07 by default).
        ignore_index: label value excluded from the loss (e.g. 255 for unlabelled pixels); ``None`` for none.

    Inputs:
        pixel_embeddings: ``[B, D, h, w]``.
        class_embeddings: ``[K, D]`` shared by the batch, or ``[B, K, D]``.
        label: class-index map ``[B, 1, H, W]`` or ``[B, H, W]`` (integer or float holding integers), or one-hot
            ``[B, K, H, W]`` (one class per pixel; reduced by argmax).

    Returns:
        Scalar loss (mean over non-ignored cells; 0 with a graph when every cell is ignored).

    Example::

        loss = PixelTextAlignmentLoss(temperature=0.07)
        value = loss(torch.randn(2, 64, 14, 14), torch.randn(3, 64), torch.randint(0, 3, (2, 1, 224, 224)))
    """

    def __init__(self, temperature: float = 0.07, ignore_index: int | None = None) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.temperature = float(temperature)
        self.ignore_index = ignore_index

    def _index_map(self, label: torch.Tensor, batch: int, num_classes: int) -> torch.Tensor:
        if label.ndim == 3:
            index = label
        elif label.ndim == 4 and label.shape[1] == 1:
            index = label[:, 0]
        elif label.ndim == 4 and label.shape[1] == num_classes:
            index = label.argmax(dim=1)
        else:
            raise ValueError(
                f"Label must be an index map [B, 1, H, W] / [B, H, W] or one-hot [B, {num_classes}, H, W]; "
                f"got shape {tuple(label.shape)}."
            )
        if index.shape[0] != batch:
            raise ValueError(f"Label batch size {index.shape[0]} differs from the pixel embeddings' {batch}.")
        if index.is_floating_point():
            rounded = index.round()
            if not torch.equal(rounded, index):
                raise ValueError("Float label holds non-integer values: expected a class-index map or a one-hot map.")
            index = rounded
        return index.long()

    def forward(
        self, pixel_embeddings: torch.Tensor, class_embeddings: torch.Tensor, label: torch.Tensor
    ) -> torch.Tensor:
        if pixel_embeddings.ndim != 4:
            raise ValueError(f"pixel_embeddings must be [B, D, h, w], got shape {tuple(pixel_embeddings.shape)}.")
        batch, dim = pixel_embeddings.shape[:2]
        if class_embeddings.ndim == 2:
            class_embeddings = class_embeddings.unsqueeze(0).expand(batch, -1, -1)
        if class_embeddings.ndim != 3 or class_embeddings.shape[0] != batch or class_embeddings.shape[2] != dim:
            raise ValueError(
                f"class_embeddings must be [K, {dim}] or [{batch}, K, {dim}] to match pixel embeddings "
                f"{tuple(pixel_embeddings.shape)}; got {tuple(class_embeddings.shape)}."
            )
        num_classes = class_embeddings.shape[1]
        index = self._index_map(label, batch, num_classes)
        target = downsample_label_majority(index, pixel_embeddings.shape[-2:], num_classes, self.ignore_index)
        pixels = F.normalize(pixel_embeddings.float(), dim=1)
        classes = F.normalize(class_embeddings.float(), dim=2)
        logits = torch.einsum("bdhw,bkd->bkhw", pixels, classes) / self.temperature
        if not (target != _IGNORED).any():
            return logits.sum() * 0.0
        return F.cross_entropy(logits, target.to(logits.device), ignore_index=_IGNORED)

"""Pixel-text alignment loss: each pixel is classified among the classes by its cosine to their text embeddings."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

__all__ = ["PixelTextAlignmentLoss", "downsample_label_majority"]

# Target value excluded by F.cross_entropy (its default ignore_index).
_IGNORED = -100


def _assert_values(ok: torch.Tensor, message: str, describe: Callable[[], str] | None = None) -> None:
    """Stop unless ``ok`` holds everywhere, without the host reading a value from the device.

    ``torch._assert_async`` on every device: on an accelerator it is queued with the step's kernels, and a failure
    stops the run at a later synchronisation as a device-side assertion; on the CPU it fails at once and becomes a
    ``ValueError`` (with ``describe()``'s fuller message, computed only then).
    """
    try:
        torch._assert_async(ok.all(), message)
    except RuntimeError:
        raise ValueError(describe() if describe is not None else message) from None


def downsample_label_majority(
    label: torch.Tensor, size: tuple[int, int], num_classes: int, ignore_index: int | None = None
) -> torch.Tensor:
    """Index map ``[B, H, W]`` -> ``[B, h, w]`` holding, per output cell, the class covering most of its area.

    Pixels equal to ``ignore_index`` count as their own category: a cell where they are the majority becomes ``-100``
    (ignored by ``F.cross_entropy``). When ``(h, w)`` is larger than ``(H, W)`` the map is upsampled by nearest
    neighbour instead.

    Raises:
        ValueError: a label on the CPU holds a value outside ``[0, num_classes - 1]`` (other than ``ignore_index``);
            the message names up to five of them. On an accelerator the check is an asynchronous assertion
            (``torch._assert_async``, see :class:`PixelTextAlignmentLoss`) and such pixels are ignored until it stops
            the run.
    """
    valid = torch.ones_like(label, dtype=torch.bool) if ignore_index is None else label != ignore_index
    known = valid & (label >= 0) & (label < num_classes)
    bounds = (
        f"outside [0, {num_classes - 1}] for {num_classes} classes"
        + ("" if ignore_index is None else f" (ignore_index={ignore_index})")
        + "."
    )
    _assert_values(
        torch.eq(known, valid),
        f"Label values are {bounds}",
        lambda: f"Label values {sorted({int(v) for v in label[known != valid].unique()[:5]})} are {bounds}",
    )
    # One extra channel collects ignored pixels so that they compete for the majority like a class. Scattered into a
    # float map: F.one_hot would read the label's range on the host and make an int64 copy of the one-hot map.
    index = torch.where(known, label, num_classes).long().unsqueeze(1)
    one_hot = torch.zeros(label.shape[0], num_classes + 1, *label.shape[1:], device=label.device)
    one_hot = one_hot.scatter_(1, index, 1.0)
    if size[0] <= label.shape[-2] and size[1] <= label.shape[-1]:
        one_hot = F.adaptive_avg_pool2d(one_hot, size)
    else:
        one_hot = F.interpolate(one_hot, size=size, mode="nearest")
    target = one_hot.argmax(dim=1)
    return target.masked_fill(target == num_classes, _IGNORED)


class PixelTextAlignmentLoss(_Loss):
    """Cross-entropy of every pixel over its cosine similarities to the class text embeddings.

    ``logits[b, k, y, x] = similarity[b, k, y, x] / temperature`` and the target is the pixel's class, so each pixel is
    pulled toward the text of its own class and pushed away from the others (an InfoNCE over classes). The similarity
    map is the network's own (``VLSANet``'s training output ``"pixel_text_similarity"``, the cosine its decoder adds to
    the logits), so the loss computes no embedding or cosine again. The label is brought to the map's resolution by
    area majority (see :func:`downsample_label_majority`), so coarse maps are supervised by the class covering most of
    each cell.

    No step waits for the device: the host reads no tensor value. Cells of ``ignore_index`` are left out arithmetically
    (a batch where all are gives 0, with a graph). The label's values are checked by asynchronous assertions
    (``torch._assert_async``): on an accelerator a bad label stops the run at a later synchronisation with a
    device-side assertion, instead of every step waiting for the device to answer checks that pass; on the CPU, where
    the assertion fails at once, it is a ``ValueError`` naming the values.

    Args:
        temperature: softmax temperature of the cosine similarities (CLIP's 0.07 by default).
        ignore_index: label value excluded from the loss (e.g. 255 for unlabelled pixels); ``None`` for none.

    Inputs:
        similarity: cosine similarities ``[B, K, h, w]`` of every pixel to each of the ``K`` classes.
        label: class-index map ``[B, 1, H, W]`` or ``[B, H, W]`` (integer or float holding integers), or one-hot
            ``[B, K, H, W]`` (one class per pixel; reduced by argmax).

    Returns:
        Scalar loss (mean over non-ignored cells; 0 with a graph when every cell is ignored).

    Raises:
        ValueError: the similarity is not ``[B, K, h, w]``, the label has another form or batch size, or (label on the
            CPU; on an accelerator a device-side assertion) it holds non-integer values or values outside
            ``[0, K - 1]``.

    Example::

        loss = PixelTextAlignmentLoss(temperature=0.07)
        value = loss(torch.rand(2, 3, 112, 112) * 2 - 1, torch.randint(0, 3, (2, 1, 224, 224)))
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
            raise ValueError(f"Label batch size {index.shape[0]} differs from the similarity map's {batch}.")
        if index.is_floating_point():
            rounded = index.round()
            _assert_values(
                torch.eq(rounded, index),
                "Float label holds non-integer values: expected a class-index map or a one-hot map.",
            )
            index = rounded
        return index.long()

    def forward(self, similarity: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if similarity.ndim != 4:
            raise ValueError(f"similarity must be [B, K, h, w], got shape {tuple(similarity.shape)}.")
        batch, num_classes = similarity.shape[:2]
        index = self._index_map(label, batch, num_classes)
        target = downsample_label_majority(index, similarity.shape[-2:], num_classes, self.ignore_index)
        target = target.to(similarity.device)
        # Summed, then divided by the counted cells (at least 1): the mean over non-ignored cells, and 0 when there
        # are none, without asking the device whether there are.
        summed = F.cross_entropy(similarity.float() / self.temperature, target, ignore_index=_IGNORED, reduction="sum")
        return summed / (target != _IGNORED).sum().clamp_min(1)

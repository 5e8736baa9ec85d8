"""What the handlers share: names, spacing and index maps of the decollated items an engine produced."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine
from monai_ext.io import image_stem

__all__ = ["item_name", "output_items", "item_spacing", "as_index_map", "picture_axes"]

# The entries of an input item that output_items copies to its output item.
ITEM_KEYS = ("name", "text", "slice_index", "num_slices", "spacing", "slice_spacing")


def item_name(item: dict[str, Any], fallback: str) -> str:
    """A readable, file-system safe name for one decollated batch item: its ``name`` key, else the image file stem."""
    name = item.get("name")
    if not name:
        meta = getattr(item.get("image"), "meta", None) or item.get("image_meta_dict") or {}
        source = meta.get("filename_or_obj") if isinstance(meta, dict) else None
        if source:
            name = image_stem(str(source))
    name = str(name or fallback)
    slice_index = item.get("slice_index")
    if slice_index is not None:
        name = f"{name}_slice{int(slice_index):04d}"
    return name.replace(os.sep, "_")


def output_items(engine: Engine) -> list[dict[str, Any]]:
    """The decollated output items of the current iteration, each with the ``name``, ``text``, ``slice_index``,
    ``num_slices``, ``spacing`` and ``slice_spacing`` of its input item added (MONAI's engines keep only image, label
    and pred in the output)."""
    batch = engine.state.batch if isinstance(engine.state.batch, list) else []
    items = []
    for i, item in enumerate(engine.state.output):
        source = batch[i] if i < len(batch) and isinstance(batch[i], dict) else {}
        extra = {k: source[k] for k in ITEM_KEYS if k in source and k not in item}
        items.append({**extra, **item})
    return items


def item_spacing(item: dict[str, Any]) -> list[float] | None:
    """The pixel spacing an item's pipeline recorded (:class:`monai_ext.data.RecordSpacingd`), None when it has none
    (distances are then in pixels of the evaluated image)."""
    spacing = item.get("spacing")
    return None if spacing is None else [float(v) for v in torch.as_tensor(spacing).flatten()]


def as_index_map(pred: torch.Tensor | np.ndarray, spatial_shape: Sequence[int] | None = None) -> np.ndarray:
    """[C, H, W] one-hot/binary or [1, H, W] index map -> [H, W] integer index map, resampled (nearest) to
    ``spatial_shape`` when given (a prediction inverted to the original size next to the resized image)."""
    tensor = torch.as_tensor(pred).detach().cpu().float()
    index = tensor.argmax(0) if tensor.ndim == 3 and tensor.shape[0] > 1 else tensor.reshape(tensor.shape[-2:]).round()
    if spatial_shape is not None and tuple(index.shape) != tuple(spatial_shape):
        index = torch.nn.functional.interpolate(index[None, None], size=tuple(spatial_shape), mode="nearest")[0, 0]
    return index.numpy().astype(np.int64)


def picture_axes(array: np.ndarray) -> np.ndarray:
    """MONAI arrays index space as (x, y); pictures are (row = y, column = x)."""
    return np.swapaxes(array, -1, -2)

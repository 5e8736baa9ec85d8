"""Ignite handlers shared by the bundles: segmentation reports and overlay pictures from an evaluator's output."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_ext.metrics import SegmentationReport
from monai_ext.utils.visualize import save_overlay_png

__all__ = ["SegmentationReportWriter", "OverlayWriter", "item_name"]

logger = logging.getLogger(__name__)


def item_name(item: dict[str, Any], fallback: str) -> str:
    """A readable, file-system safe name for one decollated batch item: its ``name`` key, else the image file stem."""
    name = item.get("name")
    if not name:
        meta = getattr(item.get("image"), "meta", None) or item.get("image_meta_dict") or {}
        source = meta.get("filename_or_obj") if isinstance(meta, dict) else None
        if source:
            name = os.path.basename(str(source))
            for suffix in (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".dcm"):
                if name.lower().endswith(suffix):
                    name = name[: -len(suffix)]
                    break
    name = str(name or fallback)
    slice_index = item.get("slice_index")
    if slice_index is not None:
        name = f"{name}_slice{int(slice_index):04d}"
    return name.replace(os.sep, "_")


def _as_index_map(pred: torch.Tensor | np.ndarray, spatial_shape: Sequence[int] | None = None) -> np.ndarray:
    """[C, H, W] one-hot/binary or [1, H, W] index map -> [H, W] integer index map, resampled (nearest) to
    ``spatial_shape`` when given (a prediction inverted to the original size next to the resized image)."""
    tensor = torch.as_tensor(pred).detach().cpu().float()
    index = tensor.argmax(0) if tensor.ndim == 3 and tensor.shape[0] > 1 else tensor.reshape(tensor.shape[-2:]).round()
    if spatial_shape is not None and tuple(index.shape) != tuple(spatial_shape):
        index = torch.nn.functional.interpolate(index[None, None], size=tuple(spatial_shape), mode="nearest")[0, 0]
    return index.numpy().astype(np.int64)


def _display(array: np.ndarray) -> np.ndarray:
    """MONAI arrays index space as (x, y); pictures are (row = y, column = x)."""
    return np.swapaxes(array, -1, -2)


class OverlayWriter:
    """Writes ``<output_dir>/<name>.png``: the image with prediction (red / per class) and ground truth (green) contours,
    and the report printed below, for the first ``max_images`` items an engine processes (all when None).

    Example::

        OverlayWriter(output_dir="eval/overlays", max_images=16).attach(evaluator)
    """

    def __init__(self, output_dir: str, max_images: int | None = 16, overwrite: bool = True, text_key: str = "text"):
        self.output_dir = output_dir
        self.max_images = max_images
        self.overwrite = overwrite
        self.text_key = text_key
        self._written = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self._written = 0

    def __call__(self, engine: Engine) -> None:
        os.makedirs(self.output_dir, exist_ok=True)
        for i, item in enumerate(engine.state.output):
            if self.max_images is not None and self._written >= self.max_images:
                return
            name = item_name(item, fallback=f"item{engine.state.iteration:05d}_{i}")
            image = item["image"].detach().cpu().numpy()
            label = item.get("label")
            shape = image.shape[-2:]
            save_overlay_png(
                _display(image),
                mask=None if label is None else _display(_as_index_map(label, shape)),
                pred=_display(_as_index_map(item["pred"], shape)),
                text=item.get(self.text_key),
                path=os.path.join(self.output_dir, f"{name}.png"),
                overwrite=self.overwrite,
            )
            self._written += 1


class SegmentationReportWriter:
    """Accumulates per-image and dataset-level Dice, IoU, HD95 and NSD over an evaluator run and writes
    ``report.json``, ``per_image.csv`` and ``report.md`` into ``output_dir`` when the run completes.

    Args:
        output_dir: where the report goes.
        num_classes: foreground classes for binary (1) or number of classes including background for index maps.
        class_names: names used in the report.
        overwrite: replace an existing report (a re-evaluation), else refuse.

    Example::

        SegmentationReportWriter(output_dir="eval").attach(evaluator)
    """

    def __init__(
        self,
        output_dir: str,
        num_classes: int = 1,
        class_names: Sequence[str] | None = None,
        overwrite: bool = True,
        text_key: str = "text",
    ):
        self.output_dir = output_dir
        self.num_classes = num_classes
        self.class_names = class_names
        self.overwrite = overwrite
        self.text_key = text_key
        self.report: SegmentationReport | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._add)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _start(self, engine: Engine) -> None:
        self.report = SegmentationReport(num_classes=self.num_classes, class_names=self.class_names)

    def _add(self, engine: Engine) -> None:
        for i, item in enumerate(engine.state.output):
            if item.get("label") is None:
                raise ValueError("SegmentationReportWriter needs labels; use OverlayWriter for unlabelled inference.")
            extra = {self.text_key: item[self.text_key]} if isinstance(item.get(self.text_key), str) else None
            self.report.add(
                item_name(item, fallback=f"item{engine.state.iteration:05d}_{i}"),
                _as_index_map(item["pred"]),
                _as_index_map(item["label"]),
                extra=extra,
            )

    def _write(self, engine: Engine) -> None:
        self.report.write(self.output_dir, overwrite=self.overwrite)
        logger.info("Segmentation report written to %s\n%s", self.output_dir, self.report.format_markdown())

"""Overlay pictures (image, prediction and ground-truth contours, report) from an evaluator's output."""

from __future__ import annotations

import os

from ignite.engine import Engine, Events
from monai_ext.handlers.utils import as_index_map, item_name, output_items, picture_axes
from monai_ext.visualize import save_overlay_png

__all__ = ["OverlayWriter"]


class OverlayWriter:
    """Writes ``<output_dir>/<name>.png``: the image with prediction (red / per class) and ground truth (green) contours,
    and the report printed below, for the first ``max_images`` items an engine processes (all when None).

    An input whose channel count is neither 1 nor 3 (an image with extra hint channels, as the oracle baseline reads)
    is drawn from its first channel.

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
        for i, item in enumerate(output_items(engine)):
            if self.max_images is not None and self._written >= self.max_images:
                return
            name = item_name(item, fallback=f"item{engine.state.iteration:05d}_{i}")
            image = item["image"].detach().cpu().numpy()
            if image.ndim == 3 and image.shape[0] not in (1, 3):
                image = image[:1]
            label = item.get("label")
            shape = image.shape[-2:]
            save_overlay_png(
                picture_axes(image),
                mask=None if label is None else picture_axes(as_index_map(label, shape)),
                pred=picture_axes(as_index_map(item["pred"], shape)),
                text=item.get(self.text_key),
                path=os.path.join(self.output_dir, f"{name}.png"),
                overwrite=self.overwrite,
            )
            self._written += 1

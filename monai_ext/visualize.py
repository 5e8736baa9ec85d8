"""Overlay pictures for checking segmentations by eye: image, ground-truth contours, prediction and the report text."""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai_ext.io import atomic_write
from PIL import Image, ImageDraw, ImageFont

__all__ = ["render_overlay", "save_overlay_png", "save_overlay_grid", "save_picture_grid"]

GROUND_TRUTH_COLOUR = (0, 220, 0)
PREDICTION_COLOUR = (255, 40, 40)
# Per-class colours for multi-class index maps (label 1, 2, ...); green is left out so it only ever means ground truth
# in binary overlays.
CLASS_COLOURS = (
    (255, 40, 40),
    (40, 120, 255),
    (255, 200, 0),
    (230, 0, 230),
    (0, 220, 220),
    (255, 130, 0),
    (150, 90, 255),
)
PREDICTION_ALPHA = 0.35
BAND_COLOUR = (20, 20, 20)
TEXT_COLOUR = (235, 235, 235)


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = value.float() if value.dtype in (torch.bfloat16, torch.float16) else value
        return np.asarray(value.numpy())
    return np.asarray(value)


def _image_to_rgb(image: Any) -> np.ndarray:
    """[H, W], [1, H, W] or [3, H, W] of any range -> uint8 [H, W, 3], min-max rescaled over all channels."""
    array = _to_numpy(image).astype(np.float64)
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = np.moveaxis(array, 0, -1)
    elif array.ndim == 2:
        array = array[..., None]
    else:
        raise ValueError(f"Overlay image must be [H, W], [1, H, W] or [3, H, W] (channel first), got {array.shape}.")
    finite = np.isfinite(array)
    if not finite.any():
        raise ValueError("Overlay image has no finite values.")
    low, high = array[finite].min(), array[finite].max()
    scaled = np.where(finite, (array - low) / (high - low) if high > low else 0.0, 0.0)
    rgb = np.round(scaled * 255).astype(np.uint8)
    return np.repeat(rgb, 3, axis=-1) if rgb.shape[-1] == 1 else rgb


def _to_label_map(mask: Any, what: str, shape: tuple[int, int]) -> np.ndarray:
    """Binary or index map [H, W] / [1, H, W] -> int64 [H, W], checked against the image's size."""
    array = _to_numpy(mask)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.shape != shape:
        raise ValueError(
            f"Overlay {what} has shape {array.shape}; expected [H, W] or [1, H, W] matching image {shape}."
        )
    if array.dtype != bool and not np.array_equal(array, np.round(array)):
        raise ValueError(f"Overlay {what} has non-integer values; threshold probabilities (or argmax) first.")
    if array.min() < 0:
        raise ValueError(f"Overlay {what} has negative labels.")
    return array.astype(np.int64)


def _boundary(region: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``region`` with a 4-neighbour outside it, thickened to ``width`` pixels inwards and outwards."""
    padded = np.pad(region, 1)
    interior = region & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    edge = region & ~interior
    for _ in range(width - 1):
        padded = np.pad(edge, 1)
        edge = edge | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
    return edge


def _colour(label: int, multi_class: bool, default: tuple[int, int, int]) -> tuple[int, int, int]:
    return CLASS_COLOURS[(label - 1) % len(CLASS_COLOURS)] if multi_class else default


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _text_band(lines: Sequence[str], width: int, font_size: int) -> Image.Image:
    """A dark band ``width`` wide with ``lines`` wrapped to fit, in Pillow's default font."""
    font = _font(font_size)
    margin = max(4, font_size // 2)
    char_width = max(1.0, font.getlength("abcdefghijklmnopqrstuvwxyz") / 26)
    chars_per_line = max(8, int((width - 2 * margin) / char_width))
    wrapped: list[str] = []
    for line in lines:
        wrapped.extend(textwrap.wrap(line, chars_per_line) or [""])
    line_height = int(font_size * 1.3)
    band = Image.new("RGB", (width, 2 * margin + line_height * len(wrapped)), BAND_COLOUR)
    draw = ImageDraw.Draw(band)
    for i, line in enumerate(wrapped):
        draw.text((margin, margin + i * line_height), line, fill=TEXT_COLOUR, font=font)
    return band


def render_overlay(
    image: Any,
    mask: Any = None,
    pred: Any = None,
    text: str | Sequence[str] | None = None,
    min_size: int = 256,
    legend: bool = True,
) -> Image.Image:
    """Draw an overlay picture and return it as an RGB PIL image.

    Args:
        image: [H, W], [1, H, W] or [3, H, W] array/tensor of any intensity range (min-max rescaled for display).
        mask: ground truth, binary or index map [H, W] / [1, H, W]; drawn as contours.
        pred: prediction, binary or index map [H, W] / [1, H, W]; drawn as a translucent fill with a thin contour.
        text: the report (or several prompts) printed, wrapped, on a band below the image.
        min_size: small images are enlarged by an integer factor (nearest neighbour) until the shorter side reaches
            this, so that contours and text stay legible.
        legend: add a line saying which colour is which.

    Binary maps: ground truth green, prediction red. Index maps with labels above 1: one colour per class for both,
    ground truth as contour, prediction as fill.

    Example::

        picture = render_overlay(ct_slice, mask=label, pred=prediction, text="Ground-glass opacity, right lower lobe.")
    """
    rgb = _image_to_rgb(image)
    shape = rgb.shape[:2]
    label_map = None if mask is None else _to_label_map(mask, "mask", shape)
    pred_map = None if pred is None else _to_label_map(pred, "prediction", shape)
    present = [m for m in (label_map, pred_map) if m is not None]
    multi_class = any(m.max() > 1 for m in present)

    scale = max(1, math.ceil(min_size / min(shape)))
    if scale > 1:
        rgb = rgb.repeat(scale, axis=0).repeat(scale, axis=1)
        label_map = None if label_map is None else label_map.repeat(scale, axis=0).repeat(scale, axis=1)
        pred_map = None if pred_map is None else pred_map.repeat(scale, axis=0).repeat(scale, axis=1)
    line_width = max(1, round(min(rgb.shape[:2]) / 256))

    canvas = rgb.astype(np.float64)
    if pred_map is not None:
        for value in np.unique(pred_map[pred_map > 0]):
            region = pred_map == value
            colour = np.array(_colour(int(value), multi_class, PREDICTION_COLOUR), dtype=np.float64)
            canvas[region] = (1 - PREDICTION_ALPHA) * canvas[region] + PREDICTION_ALPHA * colour
            canvas[_boundary(region, 1)] = colour
    if label_map is not None:
        for value in np.unique(label_map[label_map > 0]):
            canvas[_boundary(label_map == value, line_width + 1)] = _colour(
                int(value), multi_class, GROUND_TRUTH_COLOUR
            )
    picture = Image.fromarray(np.round(canvas).astype(np.uint8))

    lines = [] if text is None else [text] if isinstance(text, str) else [str(t) for t in text]
    if legend and present:
        parts = []
        if label_map is not None:
            parts.append("contours: ground truth" if multi_class else "green: ground truth")
        if pred_map is not None:
            parts.append("fill: prediction" if multi_class else "red: prediction")
        lines = lines + [", ".join(parts) + (" (colour = class)" if multi_class else "")]
    if not lines:
        return picture
    band = _text_band(lines, picture.width, font_size=max(12, picture.width // 32))
    combined = Image.new("RGB", (picture.width, picture.height + band.height), BAND_COLOUR)
    combined.paste(picture, (0, 0))
    combined.paste(band, (0, picture.height))
    return combined


def _save_png(picture: Image.Image, path: str | os.PathLike, overwrite: bool) -> str:
    with atomic_write(path, mode="wb", overwrite=overwrite) as f:
        picture.save(f, format="PNG")
    return os.fspath(path)


def save_overlay_png(
    image: Any,
    mask: Any = None,
    path: str | os.PathLike | None = None,
    pred: Any = None,
    text: str | Sequence[str] | None = None,
    overwrite: bool = False,
    min_size: int = 256,
) -> str:
    """Write :func:`render_overlay`'s picture to ``path`` as PNG, atomically; returns the path.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: shapes or values that cannot be drawn (the message says which input).

    Example::

        save_overlay_png(image, label, "overlays/case1.png", pred=prediction, text=report)
    """
    if path is None:
        raise TypeError("save_overlay_png needs the output path (path=...).")
    return _save_png(render_overlay(image, mask=mask, pred=pred, text=text, min_size=min_size), path, overwrite)


def save_overlay_grid(
    images: Sequence[Any],
    path: str | os.PathLike,
    masks: Sequence[Any] | None = None,
    preds: Sequence[Any] | None = None,
    texts: Sequence[str | None] | None = None,
    ncols: int = 4,
    overwrite: bool = False,
    min_size: int = 256,
) -> str:
    """Several overlays side by side in one PNG (rows of ``ncols``), e.g. a validation batch; returns the path.

    Example::

        save_overlay_grid(batch["image"], "val/epoch3.png", masks=batch["label"], preds=outputs, texts=batch["text"])
    """
    count = len(images)
    if count == 0:
        raise ValueError("save_overlay_grid needs at least one image.")
    for what, values in (("masks", masks), ("preds", preds), ("texts", texts)):
        if values is not None and len(values) != count:
            raise ValueError(f"save_overlay_grid: {len(values)} {what} for {count} images.")
    tiles = [
        render_overlay(
            images[i],
            mask=None if masks is None else masks[i],
            pred=None if preds is None else preds[i],
            text=None if texts is None else texts[i],
            min_size=min_size,
        )
        for i in range(count)
    ]
    return _save_png(_grid(tiles, ncols), path, overwrite)


def _grid(tiles: Sequence[Image.Image], ncols: int) -> Image.Image:
    """``tiles`` in rows of ``ncols`` cells the size of the largest tile, with a thin gap."""
    ncols = max(1, min(ncols, len(tiles)))
    nrows = math.ceil(len(tiles) / ncols)
    cell_width, cell_height = max(t.width for t in tiles), max(t.height for t in tiles)
    gap = 4
    grid = Image.new(
        "RGB", (ncols * cell_width + (ncols - 1) * gap, nrows * cell_height + (nrows - 1) * gap), BAND_COLOUR
    )
    for i, tile in enumerate(tiles):
        row, col = divmod(i, ncols)
        grid.paste(tile, (col * (cell_width + gap), row * (cell_height + gap)))
    return grid


def save_picture_grid(
    pictures: Sequence[str | os.PathLike], path: str | os.PathLike, ncols: int = 2, overwrite: bool = False
) -> str:
    """Pictures already written (e.g. overlays of the same image with two reports) in rows of ``ncols``, in one PNG;
    returns the path.

    Raises:
        ValueError: no pictures.
        FileNotFoundError: a picture is missing (the message names it).

    Example::

        save_picture_grid(["eval/overlays/test_0001.png", "eval_cf/overlays/test_0001.png"], "compare.png")
    """
    if not pictures:
        raise ValueError("save_picture_grid needs at least one picture.")
    tiles = []
    for picture in pictures:
        if not os.path.isfile(picture):
            raise FileNotFoundError(f"save_picture_grid: picture '{os.fspath(picture)}' not found.")
        with Image.open(picture) as opened:
            tiles.append(opened.convert("RGB"))
    return _save_png(_grid(tiles, ncols), path, overwrite)

"""Shared pieces of the synthetic data generators: per-sample random streams, staged output folders, drawing helpers.

Determinism: every sample draws from its own ``numpy.random.Generator`` seeded by ``SeedSequence(seed, spawn_key=key)``
where ``key`` names the sample (split/domain index, sample index). Sample ``i`` is therefore the same whatever the
number of samples requested, and the same seed gives the same bytes in every file (PNG written by PIL with fixed
settings and no timestamps, NIfTI gzip written by nibabel without mtime, JSON with sorted keys).

Atomicity: a dataset is written into a hidden staging folder beside ``out_dir`` and renamed onto ``out_dir`` only once
complete, so a crashed or interrupted run never leaves a half-written dataset that looks finished.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "MARKER_FILE",
    "sample_rng",
    "staged_output_dir",
    "write_png",
    "write_json",
    "normalized_grid",
    "ellipse_radius",
    "soft_inside",
    "smooth_noise",
    "split_counts",
    "check_count",
    "check_image_size",
]

# Written by every generator at the top of its output; ``overwrite=True`` only replaces folders that carry it.
MARKER_FILE = "synthetic.json"


def sample_rng(seed: int, *key: int) -> np.random.Generator:
    """Random generator of one sample, independent of how many other samples are generated.

    Args:
        seed: dataset seed (non-negative int).
        key: integers naming the sample, e.g. ``(split_index, sample_index)``.
    """
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in key)))


def _check_replaceable(out_dir: str, overwrite: bool) -> None:
    if not os.path.lexists(out_dir):
        return
    if not os.path.isdir(out_dir) or os.path.islink(out_dir):
        raise FileExistsError(errno.EEXIST, f"Output '{out_dir}' exists and is not a folder", out_dir)
    if not os.listdir(out_dir):
        return
    if not overwrite:
        raise FileExistsError(
            errno.EEXIST, f"Output folder '{out_dir}' is not empty; pass overwrite=True to replace it", out_dir
        )
    if not os.path.isfile(os.path.join(out_dir, MARKER_FILE)):
        # overwrite=True deletes the old folder: never do that to a folder these generators did not write.
        raise FileExistsError(
            errno.EEXIST,
            f"Output folder '{out_dir}' is not empty and was not written by a synthetic data generator (no "
            f"'{MARKER_FILE}' in it); refusing to replace it even with overwrite=True. Choose another folder.",
            out_dir,
        )


@contextmanager
def staged_output_dir(out_dir: str | os.PathLike, overwrite: bool = False) -> Iterator[str]:
    """Yield a fresh staging folder; on success it replaces ``out_dir``, on error it is removed.

    ``out_dir`` may be missing or empty. A non-empty ``out_dir`` is replaced only with ``overwrite=True`` and only if
    it holds :data:`MARKER_FILE` (i.e. it is an earlier synthetic dataset).

    Raises:
        FileExistsError: ``out_dir`` is a file, or non-empty without ``overwrite``, or not a synthetic dataset.

    Example::

        with staged_output_dir("data/demo") as staging:
            write_png(image, os.path.join(staging, "img", "a.png"))
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    _check_replaceable(out_dir, overwrite)  # fail before any work is done
    parent, name = os.path.split(out_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".staging")
    try:
        yield staging
        _check_replaceable(out_dir, overwrite)  # the folder may have changed while generating
        old = None
        if os.path.isdir(out_dir):
            old = tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".old")
            os.rmdir(old)
            os.rename(out_dir, old)
        try:
            os.rename(staging, out_dir)
        except OSError:
            if old is not None:
                os.rename(old, out_dir)
            raise
        if old is not None:
            shutil.rmtree(old)
        os.chmod(out_dir, 0o777 & ~_umask())
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)


def _umask() -> int:
    umask = os.umask(0)  # reading the umask requires setting it; restored immediately
    os.umask(umask)
    return umask


def write_png(array: np.ndarray, path: str) -> None:
    """Write a uint8 ``(H, W)`` (grayscale) or ``(H, W, 3)`` (RGB) array as PNG with fixed, reproducible settings."""
    if array.dtype != np.uint8:
        raise ValueError(f"PNG '{path}' must be written from uint8 data, got {array.dtype}.")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, format="PNG", compress_level=6, optimize=False)


def write_json(obj: Any, path: str) -> None:
    """Write JSON with sorted keys, indentation and a trailing newline (byte-identical for equal content)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def normalized_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(yy, xx)`` of a ``size x size`` image in [-1, 1] (row, column order)."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    return np.meshgrid(coords, coords, indexing="ij")


def ellipse_radius(
    yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float, angle: float = 0.0
) -> np.ndarray:
    """Normalised elliptic radius: < 1 inside the ellipse centred at (cy, cx) with semi-axes (ry, rx), rotated by
    ``angle`` radians; equals 1 on its border."""
    dy, dx = yy - cy, xx - cx
    cos, sin = np.cos(angle), np.sin(angle)
    u = cos * dx + sin * dy
    v = -sin * dx + cos * dy
    return np.sqrt((u / rx) ** 2 + (v / ry) ** 2)


def soft_inside(radius: np.ndarray, edge: float) -> np.ndarray:
    """1 inside an ellipse (``radius`` from :func:`ellipse_radius` < 1), 0 outside, with a linear ramp of width
    ``edge`` across the border."""
    return np.clip((1.0 - radius) / edge + 0.5, 0.0, 1.0)


def smooth_noise(rng: np.random.Generator, size: int, cells: int = 8) -> np.ndarray:
    """Smooth random field of shape ``(size, size)``, zero mean and unit standard deviation, varying over about
    ``size / cells`` pixels.

    White noise on a coarse ``cells x cells`` grid is interpolated with Gaussian weights, separably as two small matrix
    products (much cheaper than spline zooming at full resolution).
    """
    centres = (np.arange(cells + 2, dtype=np.float64) - 0.5) / cells  # one extra cell beyond each border
    pixels = (np.arange(size, dtype=np.float64) + 0.5) / size
    weights = np.exp(-0.5 * ((pixels[:, None] - centres[None, :]) * cells / 0.6) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)
    field = weights @ rng.standard_normal((cells + 2, cells + 2)) @ weights.T
    return ((field - field.mean()) / (field.std() + 1e-6)).astype(np.float32)


def split_counts(n: int, test_fraction: float) -> tuple[int, int]:
    """``(n_training, n_test)`` for ``n`` samples with ``round(n * test_fraction)`` (at least 1 if ``n > 1`` and the
    fraction is positive) held out for testing."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}.")
    n_test = int(round(n * test_fraction))
    if test_fraction > 0 and n > 1:
        n_test = min(max(n_test, 1), n - 1)
    return n - n_test, n_test


def check_count(name: str, value: int, minimum: int = 0) -> int:
    """Validate a sample count argument and return it as int."""
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_image_size(image_size: int, minimum: int = 32) -> int:
    """Validate an image size argument and return it as int."""
    if isinstance(image_size, bool) or int(image_size) != image_size or image_size < minimum:
        raise ValueError(f"image_size must be an integer >= {minimum}, got {image_size!r}.")
    return int(image_size)

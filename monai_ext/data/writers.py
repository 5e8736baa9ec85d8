"""The one place masks and images are written: atomically (see :func:`monai_ext.io.atomic_write`), never replacing an
existing output unless asked.

* :func:`write_nifti` writes an array as a single-file NIfTI-1 image with a given affine (and optionally a reference
  header);
* :func:`write_mask` writes a segmentation as PNG (binary masks as 0/255) or NIfTI (compact dtype), by suffix;
* :class:`SafeSaveImaged` is MONAI's ``SaveImaged`` with its writers routed through the same atomic file handling.
"""

from __future__ import annotations

import errno
import gzip
import logging
import os
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from monai.data import MetaTensor
from monai.transforms import SaveImaged
from monai_ext.io import NIFTI_SUFFIXES, atomic_write, atomic_write_path

__all__ = ["SafeSaveImaged", "atomic_image_writer", "compact_dtype", "write_mask", "write_nifti"]


def compact_dtype(array: np.ndarray) -> np.ndarray:
    """uint8 for boolean or small non-negative integer maps (masks), float32 for anything else."""
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.uint8) if array.size and array.min() >= 0 and array.max() <= 255 else array
    rounded = np.rint(array)
    if array.size and np.array_equal(rounded, array) and array.min() >= 0 and array.max() <= 255:
        return rounded.astype(np.uint8)
    return array.astype(np.float32)


def write_nifti(
    array: np.ndarray, affine: np.ndarray, path: str | os.PathLike, overwrite: bool = False, header: Any = None
) -> None:
    """Write ``array`` (stored in its own dtype) as a single-file NIfTI-1 image, gzip-compressed for ``.gz``.

    Args:
        affine: the 4x4 voxel-to-world matrix.
        header: a NIfTI header to start from (e.g. the reference volume's, keeping its units and codes); its data
            shape, dtype and scaling are replaced by the array's.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    import nibabel as nib

    path = os.fspath(path)
    image = nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64), header=header)
    image.set_data_dtype(array.dtype)
    data = image.to_bytes()
    with atomic_write(path, mode="wb", overwrite=overwrite) as f:
        # level 1: masks and slices compress well at any level; no timestamp, so equal images give equal files
        f.write(gzip.compress(data, compresslevel=1, mtime=0) if path.endswith(".gz") else data)


def _write_png_mask(mask: np.ndarray, path: str, overwrite: bool) -> None:
    from PIL import Image

    if mask.ndim != 2:
        raise ValueError(f"A PNG mask must be 2D, got shape {mask.shape} for '{path}'.")
    values = mask * 255 if mask.max(initial=0) <= 1 else mask
    picture = Image.fromarray(np.ascontiguousarray(values.T.astype(np.uint8)))  # MONAI (x, y) -> rows, columns
    with atomic_write(path, mode="wb", overwrite=overwrite) as f:
        picture.save(f, format="PNG")


def write_mask(
    mask: np.ndarray,
    path: str | os.PathLike,
    affine: np.ndarray | None = None,
    header: Any = None,
    overwrite: bool = False,
) -> None:
    """Write a segmentation (label or probability map) in the format its suffix names.

    * ``.png``: a 2D mask in MONAI's ``(x, y)`` order; binary masks (0/1) become 0/255, label maps keep their values;
    * ``.nii``/``.nii.gz``: booleans and small non-negative integers are stored as uint8, anything else as float32
      (:func:`compact_dtype`), with ``affine`` (required) and an optional reference ``header`` (see
      :func:`write_nifti`).

    Raises:
        ValueError: another suffix, a PNG mask that is not 2D, or a NIfTI without affine.
        FileExistsError: ``path`` exists and ``overwrite`` is False.

    Example::

        write_mask(pred[0], "out/case_mask.nii.gz", affine=reference.affine, header=reference.header)
    """
    path = os.fspath(path)
    lower = path.lower()
    if lower.endswith(".png"):
        _write_png_mask(np.asarray(mask), path, overwrite)
    elif lower.endswith(NIFTI_SUFFIXES):
        if affine is None:
            raise ValueError(f"A NIfTI mask needs an affine: none given for '{path}'.")
        write_nifti(compact_dtype(np.asarray(mask)), affine, path, overwrite, header=header)
    else:
        raise ValueError(f"Mask output '{path}' must end in .png, .nii or .nii.gz.")


def _suffix(filename: str) -> str:
    lower = filename.lower()
    for double in (".nii.gz", ".seg.nrrd"):
        if lower.endswith(double):
            return filename[-len(double) :]
    return os.path.splitext(filename)[1]


def atomic_image_writer(writer_cls: type, overwrite: bool = False) -> type:
    """A subclass of a MONAI ``ImageWriter`` whose ``write`` goes through :func:`monai_ext.io.atomic_write_path`: to a
    temporary file in the destination folder with the destination's suffix (so the format is chosen as before), moved
    over the destination once complete; an existing destination is replaced only with ``overwrite=True``."""

    class AtomicWriter(writer_cls):
        def write(self, filename, verbose: bool = False, **kwargs):
            filename = os.fspath(filename)
            with atomic_write_path(filename, overwrite=overwrite, suffix=_suffix(filename)) as tmp:
                result = super().write(tmp, verbose=False, **kwargs)
            if verbose:
                logging.getLogger(__name__).info("writing: %s", filename)
            return result

    AtomicWriter.__name__ = AtomicWriter.__qualname__ = f"Atomic{writer_cls.__name__}"
    return AtomicWriter


class SafeSaveImaged(SaveImaged):
    """:class:`monai.transforms.SaveImaged` that writes atomically and refuses to replace an existing file.

    Args:
        overwrite: replace existing outputs; otherwise ``FileExistsError`` naming the file (before anything is
            written). Use a fresh ``output_dir`` or pass ``overwrite=True`` to redo a run.
        args, kwargs: as :class:`monai.transforms.SaveImaged`.

    Example::

        SafeSaveImaged(keys="pred", output_dir="predictions/masks", output_ext=".png", separate_folder=False)
    """

    def __init__(self, *args, overwrite: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.overwrite = overwrite
        self.saver.writers = tuple(atomic_image_writer(w, self.overwrite) for w in self.saver.writers)

    def _target(self, img: Any, meta: Mapping | None) -> str:
        saver = self.saver
        meta = img.meta if isinstance(img, MetaTensor) else meta
        return os.fspath(saver.folder_layout.filename(**saver.fname_formatter(meta, saver)))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        # Checked here, not only in the writer: SaveImage turns a writer's error into "cannot find a suitable writer".
        if not self.overwrite:
            d = dict(data)
            for key, meta_key, meta_key_postfix in self.key_iterator(d, self.meta_keys, self.meta_key_postfix):
                if meta_key is None and meta_key_postfix is not None:
                    meta_key = f"{key}_{meta_key_postfix}"
                meta = d.get(meta_key) if meta_key is not None else None
                target = self._target(d[key], meta)
                if os.path.lexists(target):
                    raise FileExistsError(
                        errno.EEXIST, f"Output '{target}' already exists; set overwrite=True to replace it", target
                    )
        return super().__call__(data)

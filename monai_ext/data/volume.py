"""3D volumes for 2D models: cut a volume into 2D slices (each a NIfTI file keeping its world position) and stack
per-slice predictions back into a volume with the original affine.

A slice ``k`` along ``axis`` of a volume with affine ``A`` is written as a 2D NIfTI whose 4x4 affine maps its pixel
``(i, j)`` to the same world point as voxel ``(i, j, k)`` of the volume (for ``axis=2``): the in-plane columns of
``A`` are kept, the slice axis becomes the third column and the origin moves by ``k`` steps along it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai_ext.data.readers import CheckedLoadImage, ShapeMismatchError
from monai_ext.data.writers import compact_dtype, write_mask, write_nifti
from monai_ext.io import NIFTI_SUFFIXES, image_stem

__all__ = ["VolumeSlicer", "slice_volume", "stack_slices", "expand_volume_records"]


def _slice_affine(affine: np.ndarray, axis: int, index: int) -> np.ndarray:
    in_plane = [a for a in range(3) if a != axis]
    sliced = affine[:, [*in_plane, axis, 3]].copy()
    sliced[:3, 3] = affine[:3, 3] + index * affine[:3, axis]
    return sliced


class VolumeSlicer:
    """Cut 3D volumes into 2D slice files for a 2D model and stack per-slice predictions back.

    Args:
        axis: the slicing axis of the loaded array (2: axial for volumes stored in the usual RAS/LPS order).
        overwrite: replace existing output files (otherwise ``FileExistsError`` before anything is written).

    Example::

        slicer = VolumeSlicer()
        records = slicer.slice("ct/case_01.nii.gz", "work/slices", label_path="ct/case_01_mask.nii.gz")
        # ... predict each record ...
        slicer.stack(predictions, "ct/case_01.nii.gz", "out/case_01_pred.nii.gz")
    """

    def __init__(self, axis: int = 2, overwrite: bool = False):
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {axis}.")
        self.axis = axis
        self.overwrite = overwrite
        self.loader = CheckedLoadImage()

    def _load_volume(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        volume = self.loader(path)
        if volume.ndim != 4 or volume.shape[0] != 1:
            raise ValueError(
                f"'{path}' must be a single-channel 3D volume, got shape {tuple(volume.shape)} (channel first)."
            )
        return volume[0].numpy(), np.asarray(volume.affine, dtype=np.float64)

    def slice(
        self, volume_path: str | os.PathLike, out_dir: str | os.PathLike, label_path: str | os.PathLike | None = None
    ) -> list[dict]:
        """Write every slice of a volume (and of its label) as a 2D NIfTI file.

        Args:
            volume_path: a NIfTI file, a DICOM series folder, or any 3D format MONAI's LoadImage reads.
            out_dir: slices go to ``out_dir/images`` and ``out_dir/labels``, named ``<stem>_slice<k:04d>.nii.gz``.
            label_path: the volume's label, same shape.

        Returns:
            one record per slice, in order: ``{"image", ["label"], "name", "slice_index", "num_slices",
            "source_image", ["source_label"]}``; paths are absolute, ``name`` is the volume's file stem.

        Raises:
            ImageReadError: a volume cannot be read (see :class:`~monai_ext.data.CheckedLoadImage`).
            ShapeMismatchError: the label's shape differs from the volume's.
            FileExistsError: a slice file exists and ``overwrite`` is False (nothing written).
        """
        volume_path, out_dir = os.path.abspath(os.fspath(volume_path)), os.path.abspath(os.fspath(out_dir))
        image, affine = self._load_volume(volume_path)
        label = None
        if label_path is not None:
            label_path = os.path.abspath(os.fspath(label_path))
            label, _ = self._load_volume(label_path)
            if label.shape != image.shape:
                raise ShapeMismatchError(
                    f"Label '{label_path}' has shape {label.shape} but volume '{volume_path}' has {image.shape}."
                )
            label = compact_dtype(label)  # once for the volume, so that all its slices share one dtype
        stem, num_slices = image_stem(volume_path), image.shape[self.axis]
        records = []
        for index in range(num_slices):
            file_name = f"{stem}_slice{index:04d}.nii.gz"
            record = {"image": os.path.join(out_dir, "images", file_name)}
            if label is not None:
                record["label"] = os.path.join(out_dir, "labels", file_name)
            record.update(name=stem, slice_index=index, num_slices=num_slices, source_image=volume_path)
            if label is not None:
                record["source_label"] = label_path
            records.append(record)
        if not self.overwrite:
            existing = [r[k] for r in records for k in ("image", "label") if k in r and os.path.lexists(r[k])]
            if existing:
                raise FileExistsError(
                    f"{len(existing)} slice file(s) already exist, e.g. '{existing[0]}'; pass overwrite=True to "
                    "replace them."
                )
        for record in records:
            index = record["slice_index"]
            slice_affine = _slice_affine(affine, self.axis, index)
            write_nifti(np.take(image, index, axis=self.axis), slice_affine, record["image"], self.overwrite)
            if label is not None:
                write_nifti(np.take(label, index, axis=self.axis), slice_affine, record["label"], self.overwrite)
        return records

    def _reference_geometry(self, reference_path: str) -> tuple[tuple[int, ...], np.ndarray, Any]:
        """(spatial shape, affine, NIfTI header or None) of the reference, reading only the header of a NIfTI."""
        if reference_path.lower().endswith(NIFTI_SUFFIXES) and os.path.isfile(reference_path):
            import nibabel as nib

            try:
                reference = nib.load(reference_path)
            except Exception as error:  # nibabel raises ImageFileError, EOFError, ...
                message = f"Cannot read reference '{reference_path}': {type(error).__name__}: {error}"
                raise ValueError(message) from error
            if len(reference.shape) < 3:
                raise ValueError(f"Reference '{reference_path}' is not a 3D volume (shape {reference.shape}).")
            return tuple(reference.shape[:3]), np.asarray(reference.affine, dtype=np.float64), reference.header
        volume, affine = self._load_volume(reference_path)
        return volume.shape, affine, None

    def stack(
        self,
        slice_predictions: Sequence[np.ndarray | torch.Tensor],
        reference_path: str | os.PathLike,
        out_path: str | os.PathLike,
    ) -> str:
        """Stack per-slice predictions (in slice order) into a NIfTI volume with the reference's affine.

        Args:
            slice_predictions: one 2D array per slice, shaped like a slice of the reference; a leading channel of
                size 1 is dropped. Booleans and small non-negative integers are stored as uint8, anything else as
                float32.
            reference_path: the volume that was sliced (NIfTI file, DICOM folder, ...).
            out_path: output ``.nii`` or ``.nii.gz`` file, written atomically.

        Returns:
            ``out_path``.

        Raises:
            ValueError: wrong number of slices, a slice of the wrong shape, or an unsupported output suffix.
            FileExistsError: ``out_path`` exists and ``overwrite`` is False.
        """
        reference_path, out_path = os.fspath(reference_path), os.fspath(out_path)
        if not out_path.lower().endswith(NIFTI_SUFFIXES):
            raise ValueError(f"Output '{out_path}' must end in .nii or .nii.gz.")
        if os.path.lexists(out_path) and not self.overwrite:
            raise FileExistsError(f"Output '{out_path}' already exists; pass overwrite=True to replace it.")
        shape, affine, header = self._reference_geometry(reference_path)
        slice_shape = tuple(s for a, s in enumerate(shape) if a != self.axis)
        if len(slice_predictions) != shape[self.axis]:
            raise ValueError(
                f"Got {len(slice_predictions)} slice prediction(s) for reference '{reference_path}' with "
                f"{shape[self.axis]} slices along axis {self.axis}."
            )
        slices = []
        for index, prediction in enumerate(slice_predictions):
            is_tensor = isinstance(prediction, torch.Tensor)
            array = prediction.detach().cpu().numpy() if is_tensor else np.asarray(prediction)
            if array.ndim == 3 and array.shape[0] == 1:
                array = array[0]
            if array.shape != slice_shape:
                raise ValueError(
                    f"Slice prediction {index} has shape {array.shape}; slices of '{reference_path}' are {slice_shape}."
                )
            slices.append(array)
        write_mask(np.stack(slices, axis=self.axis), out_path, affine, header=header, overwrite=self.overwrite)
        return out_path

    def expand(
        self,
        records: Sequence[Mapping[str, Any]],
        out_dir: str | os.PathLike,
        image_key: str = "image",
        label_key: str = "label",
    ) -> list[dict]:
        """Replace each volume record by its slice records (other entries such as ``text`` are copied to each).

        Each volume's slices go to ``out_dir/<stem>`` (``<stem>_2``, ... when two volumes share a file stem).

        Example::

            slice_records = VolumeSlicer().expand(load_text_datalist("cardiac/domain1/datalist.json"), "work/slices")
        """
        out_dir = os.fspath(out_dir)
        used: dict[str, int] = {}
        expanded = []
        for record in records:
            if image_key not in record:
                raise KeyError(f"Volume record has no '{image_key}' entry: {dict(record)}.")
            stem = image_stem(os.fspath(record[image_key]))
            used[stem] = used.get(stem, 0) + 1
            folder = stem if used[stem] == 1 else f"{stem}_{used[stem]}"
            slices = self.slice(record[image_key], os.path.join(out_dir, folder), record.get(label_key))
            extra = {k: v for k, v in record.items() if k not in (image_key, label_key)}
            for slice_record in slices:
                expanded.append({**extra, **slice_record, "name": record.get("name", slice_record["name"])})
        return expanded


def slice_volume(
    volume_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    label_path: str | os.PathLike | None = None,
    axis: int = 2,
    overwrite: bool = False,
) -> list[dict]:
    """Write each slice of a volume as a 2D NIfTI; see :meth:`VolumeSlicer.slice`."""
    return VolumeSlicer(axis, overwrite).slice(volume_path, out_dir, label_path)


def stack_slices(
    slice_predictions: Sequence[np.ndarray | torch.Tensor],
    reference_path: str | os.PathLike,
    out_path: str | os.PathLike,
    axis: int = 2,
    overwrite: bool = False,
) -> str:
    """Stack per-slice predictions into a NIfTI volume with the reference's affine; see :meth:`VolumeSlicer.stack`."""
    return VolumeSlicer(axis, overwrite).stack(slice_predictions, reference_path, out_path)


def expand_volume_records(
    records: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike, axis: int = 2, overwrite: bool = False
) -> list[dict]:
    """Map volume records to 2D slice records; see :meth:`VolumeSlicer.expand`."""
    return VolumeSlicer(axis, overwrite).expand(records, out_dir)

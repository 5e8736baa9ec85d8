"""Per-volume metrics of slice-wise predictions: a 2D model's slices of each volume stacked back into 3D."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from monai.utils import convert_to_numpy
from monai_ext.metrics.segmentation_report import SegmentationReport

__all__ = ["SliceVolumeReport"]


class SliceVolumeReport:
    """Accumulates a 2D model's predictions slice by slice and evaluates each volume in 3D.

    The slices of a volume (the records :class:`monai_ext.data.VolumeSlicer` writes: the volume's ``name`` and each
    slice's ``slice_index``) are stacked along the last axis in slice order, and every volume is one item of a
    :class:`SegmentationReport` with ``spatial_dims=3`` and ``unit="volume"``: 3D Dice (``monai.metrics.compute_dice``,
    the functional form of ``DiceMetric``) and HD95 (``compute_hausdorff_distance(percentile=95)``, as
    ``HausdorffDistanceMetric``) with the volume's voxel spacing, then means over volumes. This is the convention of
    the published single-source cardiac benchmarks (SLAug's ``test.py``: Dice per 3D volume, averaged over volumes,
    background left out). A per-slice mean, where every slice counts as an image, gives different numbers.

    Args:
        num_classes, class_names, regions, include_background, nsd_tolerance: as for :class:`SegmentationReport`.

    Example::

        report = SliceVolumeReport(num_classes=4, regions={"LV": [1], "MYO": [2], "RV": [3]})
        for record, pred in zip(slice_records, slice_predictions):
            report.add(record["name"], record["slice_index"], pred, label_of(record), spacing=(1.25, 1.25, 8.0))
        report.summary()["per_volume_mean"]["mean_over_regions"]["dice"]
        report.write("eval/volumes")  # report.json, per_volume.csv, report.md
    """

    def __init__(
        self,
        num_classes: int = 1,
        class_names: Sequence[str] | None = None,
        regions: Mapping[str, Sequence[int]] | None = None,
        include_background: bool = False,
        nsd_tolerance: float = 2.0,
    ):
        self.report_options = {
            "num_classes": num_classes,
            "class_names": class_names,
            "regions": regions,
            "include_background": include_background,
            "nsd_tolerance": nsd_tolerance,
        }
        SegmentationReport(**self.report_options, spatial_dims=3, unit="volume")  # the options are checked now
        self.reset()

    def reset(self) -> None:
        """Forget all slices added so far."""
        self._slices: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
        self._spacing: dict[str, tuple[float, ...] | None] = {}
        self._num_slices: dict[str, int] = {}

    def __len__(self) -> int:
        """The number of volumes seen so far."""
        return len(self._slices)

    @staticmethod
    def _slice(value: Any, what: str, volume: str, index: int) -> np.ndarray:
        array = convert_to_numpy(value)
        if array.ndim == 3 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 2:
            raise ValueError(
                f"SliceVolumeReport: {what} of slice {index} of volume '{volume}' has shape {array.shape}; expected a "
                "2D index map [H, W] or [1, H, W]."
            )
        return array

    def add(
        self,
        volume: str,
        slice_index: int,
        pred: Any,
        label: Any,
        spacing: Sequence[float] | None = None,
        num_slices: int | None = None,
    ) -> None:
        """Remember one slice of a volume.

        Args:
            volume: the volume's name (the same for all its slices).
            slice_index: the slice's position in the volume, from 0.
            pred, label: the slice's predicted and true index maps, [H, W] or [1, H, W].
            spacing: the slice's pixel spacing and the distance between slices, ``(x, y, slice)`` in mm (e.g.
                :class:`monai_ext.data.RecordSpacingd` with ``slice_spacing_key``); ``None``: unit spacing.
            num_slices: the volume's slice count, when known: a volume missing slices is then reported.

        Raises:
            ValueError: a slice given twice, a spacing of the wrong length or different from the volume's other
                slices, or a different slice count than before.
        """
        volume, index = str(volume), int(slice_index)
        if index < 0:
            raise ValueError(f"SliceVolumeReport: slice index {index} of volume '{volume}' is negative.")
        slices = self._slices.setdefault(volume, {})
        if index in slices:
            raise ValueError(f"SliceVolumeReport: slice {index} of volume '{volume}' was already added.")
        if spacing is not None:
            spacing = tuple(float(s) for s in np.asarray(spacing, dtype=np.float64).ravel())
            if len(spacing) != 3:
                raise ValueError(
                    f"SliceVolumeReport: slice {index} of volume '{volume}' has spacing {spacing}; expected three "
                    "values (two in-plane, the distance between slices)."
                )
        if slices and not _same_spacing(self._spacing[volume], spacing):
            raise ValueError(
                f"SliceVolumeReport: slice {index} of volume '{volume}' has spacing {spacing}, its other slices "
                f"{self._spacing[volume]}."
            )
        if num_slices is not None:
            known = self._num_slices.setdefault(volume, int(num_slices))
            if known != int(num_slices):
                raise ValueError(
                    f"SliceVolumeReport: slice {index} of volume '{volume}' says the volume has {num_slices} slices, "
                    f"an earlier one {known}."
                )
        self._spacing[volume] = spacing
        slices[index] = (self._slice(pred, "prediction", volume, index), self._slice(label, "label", volume, index))

    def report(self) -> SegmentationReport:
        """The :class:`SegmentationReport` (``unit="volume"``) of every volume, its slices stacked in order.

        Raises:
            ValueError: a volume misses slices (between 0 and its last slice, or up to ``num_slices``), or its slices
                differ in shape; no volume was added.
        """
        if not self._slices:
            raise ValueError("SliceVolumeReport: no slices were added.")
        report = SegmentationReport(**self.report_options, spatial_dims=3, unit="volume")
        for volume, slices in self._slices.items():
            count = self._num_slices.get(volume, max(slices) + 1)
            missing = sorted(set(range(count)) - set(slices))
            extra = sorted(i for i in slices if i >= count)
            if missing or extra:
                raise ValueError(
                    f"SliceVolumeReport: volume '{volume}' has {count} slices but got slices {sorted(slices)} "
                    f"(missing {missing[:10]}{', ...' if len(missing) > 10 else ''}"
                    f"{f'; beyond its end {extra}' if extra else ''}). Per-volume metrics need every slice of a "
                    "volume: evaluate whole volumes."
                )
            shapes = {s[0].shape for s in slices.values()} | {s[1].shape for s in slices.values()}
            if len(shapes) > 1:
                raise ValueError(
                    f"SliceVolumeReport: the slices of volume '{volume}' differ in shape: {sorted(shapes)}."
                )
            pred = np.stack([slices[i][0] for i in range(count)], axis=-1)
            label = np.stack([slices[i][1] for i in range(count)], axis=-1)
            report.add(volume, pred, label, spacing=self._spacing[volume], extra={"num_slices": count})
        return report

    def summary(self) -> dict[str, Any]:
        """:meth:`SegmentationReport.summary` of the volumes (``num_volumes``, ``per_volume_mean``, ...)."""
        return self.report().summary()

    def write(self, out_dir: str | os.PathLike, overwrite: bool = False) -> dict[str, str]:
        """Write ``report.json``, ``per_volume.csv`` and ``report.md`` into ``out_dir`` (see
        :meth:`SegmentationReport.write`)."""
        return self.report().write(out_dir, overwrite=overwrite)


def _same_spacing(a: tuple[float, ...] | None, b: tuple[float, ...] | None) -> bool:
    if a is None or b is None:
        return a is b
    return all(math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-6) for x, y in zip(a, b))

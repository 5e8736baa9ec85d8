"""Write minimal, valid CT DICOM slices (single frame, 16-bit, CT Image Storage): demo series and test fixtures."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

__all__ = ["write_dicom_ct_slice"]


def write_dicom_ct_slice(
    path: str | os.PathLike,
    pixels: np.ndarray,
    position: Sequence[float],
    instance: int,
    series_uid: str | None = None,
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    spacing: Sequence[float] = (0.5, 0.8),
    slope: float = 1.0,
    intercept: float = 0.0,
) -> str:
    """Write one CT slice; returns its path.

    Args:
        path: output file.
        pixels: stored values, ``(rows, columns)``, written as uint16; HU = ``pixels * slope + intercept``.
        position: ImagePositionPatient (LPS, mm) of the first pixel.
        instance: InstanceNumber.
        series_uid: SeriesInstanceUID shared by the slices of one series (a new UID when None).
        orientation: ImageOrientationPatient (row and column direction cosines).
        spacing: PixelSpacing (row spacing, column spacing) in mm.

    Example::

        uid = pydicom.uid.generate_uid()
        for k in range(3):
            write_dicom_ct_slice(f"series/{k}.dcm", np.zeros((64, 64)), (0, 0, 2.5 * k), k + 1, uid)
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = "CT", series_uid or generate_uid(), int(instance)
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in spacing]
    ds.Rows, ds.Columns = np.asarray(pixels).shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = float(slope), float(intercept)
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return str(path)

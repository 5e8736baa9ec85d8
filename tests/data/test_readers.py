"""Checked image loading: PNG, NIfTI, DICOM (file and series via PydicomSeriesReader), clear errors for bad files."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import LoadImage
from monai_ext.data import (
    CheckedLoadImage,
    CheckedLoadImaged,
    ImageNotFoundError,
    ImageReadError,
    PydicomSeriesReader,
    ShapeMismatchError,
)
from monai_ext.demo import write_dicom_ct_slice
from PIL import Image
from pydicom.uid import generate_uid


def write_dicom_series(
    folder,
    num_slices=4,
    rows=5,
    columns=6,
    slice_gap=2.5,
    origin=(10.0, -20.0, 30.0),
    seed=0,
    instance_order=None,
    slope=2.0,
    intercept=-1000.0,
):
    """A series whose files are named and numbered in a different order than their positions.

    Returns (raw pixels stacked as (rows, columns, slices) in position order, expected LPS affine of the
    (column, row, slice)-indexed array, slope, intercept).
    """
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 3000, size=(rows, columns, num_slices), dtype=np.uint16)
    instances = instance_order or list(range(num_slices, 0, -1))  # numbered against the position order
    uid = generate_uid()
    for k in range(num_slices):
        position = np.asarray(origin) + np.array([0.0, 0.0, slice_gap * k])
        file_name = os.path.join(folder, f"file_{(k * 7) % num_slices:03d}_{k}.dcm")
        write_dicom_ct_slice(file_name, raw[:, :, k], position, instances[k], uid, slope=slope, intercept=intercept)
    affine = np.eye(4)
    affine[:3, 0] = [0.8, 0, 0]  # along a row (next column): row direction x column spacing
    affine[:3, 1] = [0, 0.5, 0]
    affine[:3, 2] = [0, 0, slice_gap]
    affine[:3, 3] = origin
    return raw, affine, slope, intercept


LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _truncate(path, keep=0.5):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))


def test_png_loaded_channel_first_with_filename(tmp_path):
    path = str(tmp_path / "x.png")
    Image.fromarray(np.arange(24, dtype=np.uint8).reshape(4, 6)).save(path)
    image = CheckedLoadImage()(path)
    assert tuple(image.shape) == (1, 6, 4)  # MONAI's PIL reader indexes (width, height)
    assert image.meta["filename_or_obj"] == path
    assert float(image[0, 5, 3]) == 23.0


def test_corrupt_files_give_clear_errors(tmp_path):
    rng = np.random.default_rng(0)
    png = str(tmp_path / "noise.png")
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(png)
    nii_gz, nii = str(tmp_path / "vol.nii.gz"), str(tmp_path / "vol.nii")
    volume = nib.Nifti1Image(rng.normal(size=(16, 16, 16)).astype(np.float32), np.eye(4))
    nib.save(volume, nii_gz)
    nib.save(volume, nii)
    dcm = str(tmp_path / "slice.dcm")
    write_dicom_ct_slice(dcm, rng.integers(0, 1000, (32, 32), dtype=np.uint16), (0, 0, 0), 1, generate_uid())
    loader = CheckedLoadImage()
    for path in (png, nii_gz, nii, dcm):
        loader(path)  # intact files load
        _truncate(path)
        with pytest.raises(ImageReadError) as info:
            loader(path)
        assert path in str(info.value)
        assert "Error" in str(info.value)  # the underlying problem is named
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png"):
        loader(str(empty))
    with pytest.raises(ImageNotFoundError, match="absent.png") as missing:
        loader(str(tmp_path / "absent.png"))
    assert isinstance(missing.value, FileNotFoundError)


def test_nan_and_dimension_checks(tmp_path):
    data = np.zeros((4, 4, 3), dtype=np.float32)
    data[1, 2, 0] = np.nan
    data[0, 0, 1] = np.inf
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(ImageReadError, match=r"nan.nii.gz.*2 NaN/Inf"):
        CheckedLoadImage()(str(tmp_path / "nan.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2, 2), dtype=np.float32), np.eye(4)), str(tmp_path / "5d.nii.gz"))
    with pytest.raises(ImageReadError, match=r"5d.nii.gz.*expected 2 or 3"):
        CheckedLoadImage()(str(tmp_path / "5d.nii.gz"))


def test_dict_loader_checks_label_shape(tmp_path):
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "img.png")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "mask.png")
    Image.fromarray(np.zeros((8, 6), dtype=np.uint8)).save(tmp_path / "small.png")
    load = CheckedLoadImaged(keys=["image", "label"])
    sample = load({"image": str(tmp_path / "img.png"), "label": str(tmp_path / "mask.png"), "text": "t"})
    assert sample["image"].shape == sample["label"].shape == (1, 8, 8) and sample["text"] == "t"
    with pytest.raises(ShapeMismatchError) as info:
        load({"image": str(tmp_path / "img.png"), "label": str(tmp_path / "small.png")})
    assert "small.png" in str(info.value) and "img.png" in str(info.value)


def test_dicom_series_sorted_by_position_rescaled_with_affine(tmp_path):
    raw, affine_lps, slope, intercept = write_dicom_series(tmp_path / "series")
    image = CheckedLoadImage()(str(tmp_path / "series"))
    assert tuple(image.shape) == (1, 6, 5, 4)  # (channel, columns, rows, slices)
    expected = raw.transpose(1, 0, 2).astype(np.float32) * slope + intercept
    np.testing.assert_allclose(image[0].numpy(), expected)
    np.testing.assert_allclose(image.affine.numpy(), LPS_TO_RAS @ affine_lps, atol=1e-6)
    np.testing.assert_allclose(image.meta["spacing"], [0.8, 0.5, 2.5])


def test_dicom_series_matches_monai_pydicom_reader(tmp_path):
    # numbered in position order so MONAI's reader (which sorts by InstanceNumber) sorts the same way
    write_dicom_series(tmp_path / "series", instance_order=[1, 2, 3, 4])
    ours = LoadImage(reader=PydicomSeriesReader(), image_only=True)(str(tmp_path / "series"))
    monai = LoadImage(reader="PydicomReader", image_only=True)(str(tmp_path / "series"))
    np.testing.assert_allclose(ours.numpy(), monai.numpy())
    np.testing.assert_allclose(ours.affine.numpy(), monai.affine.numpy(), atol=1e-5)


def test_dicom_single_file_and_bad_series(tmp_path):
    write_dicom_series(tmp_path / "one", num_slices=1)
    (single,) = os.listdir(tmp_path / "one")
    image = CheckedLoadImage()(str(tmp_path / "one" / single))
    assert tuple(image.shape) == (1, 6, 5)
    assert image.affine.shape == (4, 4)

    write_dicom_series(tmp_path / "mixed", num_slices=2, seed=1)
    write_dicom_ct_slice(tmp_path / "mixed" / "other.dcm", np.zeros((5, 6)), (0, 0, 99), 1, generate_uid())
    with pytest.raises(ImageReadError, match="2 DICOM series"):
        CheckedLoadImage()(str(tmp_path / "mixed"))

    os.makedirs(tmp_path / "dup")
    uid = generate_uid()
    for i in range(2):
        write_dicom_ct_slice(tmp_path / "dup" / f"{i}.dcm", np.zeros((5, 6)), (0, 0, 5), i + 1, uid)
    with pytest.raises(ImageReadError, match="same position"):
        CheckedLoadImage()(str(tmp_path / "dup"))

    os.makedirs(tmp_path / "pngs")
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(tmp_path / "pngs" / "a.png")
    with pytest.raises(ImageReadError, match="holds no DICOM file"):
        CheckedLoadImage()(str(tmp_path / "pngs"))

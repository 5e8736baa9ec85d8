"""3D volumes for 2D models: slice a NIfTI volume / DICOM series, load the slices, stack predictions back."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import torch
from monai_ext.data import CheckedLoadImaged, ShapeMismatchError, expand_volume_records, slice_volume, stack_slices
from test_readers import LPS_TO_RAS, write_dicom_series


def _oblique_affine():
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 0.9, 3.0])
    affine[:3, 3] = [-40.0, 12.5, 101.0]
    return affine


def _world(affine, index):
    return (affine @ np.append(np.asarray(index, dtype=float), 1.0))[:3]


def test_nifti_slices_keep_position_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(6, 5, 4)).astype(np.float32)
    label = (volume > 0.5).astype(np.uint8)
    affine = _oblique_affine()
    nib.save(nib.Nifti1Image(volume, affine), str(tmp_path / "case.nii.gz"))
    nib.save(nib.Nifti1Image(label, affine), str(tmp_path / "case_label.nii.gz"))

    records = slice_volume(tmp_path / "case.nii.gz", tmp_path / "slices", label_path=tmp_path / "case_label.nii.gz")
    assert [r["slice_index"] for r in records] == [0, 1, 2, 3]
    assert {r["num_slices"] for r in records} == {4}
    assert records[2]["source_image"] == str(tmp_path / "case.nii.gz") and records[2]["name"] == "case"

    load = CheckedLoadImaged(keys=["image", "label"])
    samples = [load(r) for r in records]
    for k, sample in enumerate(samples):
        assert tuple(sample["image"].shape) == (1, 6, 5)
        np.testing.assert_allclose(sample["image"][0].numpy(), volume[:, :, k])
        np.testing.assert_array_equal(sample["label"][0].numpy(), label[:, :, k])
        slice_affine = sample["image"].affine.numpy()
        for i, j in [(0, 0), (5, 4), (2, 3)]:  # a slice pixel lies where the volume voxel lies
            np.testing.assert_allclose(_world(slice_affine, (i, j, 0)), _world(affine, (i, j, k)), atol=1e-4)

    predictions = [torch.as_tensor(s["label"]) for s in samples]  # (1, H, W) tensors, channel dropped
    out = stack_slices(predictions, tmp_path / "case.nii.gz", tmp_path / "pred" / "case_pred.nii.gz")
    stacked = nib.load(out)
    np.testing.assert_allclose(stacked.affine, affine, atol=1e-5)
    assert stacked.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(stacked.dataobj), label)
    with pytest.raises(FileExistsError):
        stack_slices(predictions, tmp_path / "case.nii.gz", out)
    with pytest.raises(ValueError, match="3 slice prediction"):
        stack_slices(predictions[:3], tmp_path / "case.nii.gz", tmp_path / "short.nii.gz")
    with pytest.raises(ValueError, match=r"Slice prediction 1 has shape \(5, 6\)"):
        stack_slices([np.zeros((6, 5)), np.zeros((5, 6))] * 2, tmp_path / "case.nii.gz", tmp_path / "bad.nii.gz")
    with pytest.raises(FileExistsError):  # slices are never silently replaced
        slice_volume(tmp_path / "case.nii.gz", tmp_path / "slices")
    assert len(slice_volume(tmp_path / "case.nii.gz", tmp_path / "slices", overwrite=True)) == 4


def test_slicing_other_axis(tmp_path):
    volume = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    affine = _oblique_affine()
    nib.save(nib.Nifti1Image(volume, affine), str(tmp_path / "v.nii"))
    records = slice_volume(tmp_path / "v.nii", tmp_path / "out", axis=0)
    assert len(records) == 2
    second = nib.load(records[1]["image"])
    np.testing.assert_array_equal(np.asarray(second.dataobj), volume[1])
    np.testing.assert_allclose(_world(second.affine, (2, 3, 0)), _world(affine, (1, 2, 3)), atol=1e-4)
    out = stack_slices(
        [np.asarray(nib.load(r["image"]).dataobj) for r in records],
        tmp_path / "v.nii",
        tmp_path / "back.nii.gz",
        axis=0,
    )
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), volume)


def test_dicom_series_slice_and_stack(tmp_path):
    raw, affine_lps, slope, intercept = write_dicom_series(tmp_path / "series", num_slices=3)
    expected_affine = LPS_TO_RAS @ affine_lps
    records = slice_volume(tmp_path / "series", tmp_path / "slices")
    assert len(records) == 3 and records[0]["name"] == "series"
    first = CheckedLoadImaged(keys="image")(records[1])["image"]
    np.testing.assert_allclose(first[0].numpy(), raw[:, :, 1].T * slope + intercept)
    np.testing.assert_allclose(_world(first.affine.numpy(), (3, 2, 0)), _world(expected_affine, (3, 2, 1)), atol=1e-4)

    masks = [np.full((6, 5), k, dtype=np.uint8) for k in range(3)]
    out = stack_slices(masks, tmp_path / "series", tmp_path / "series_mask.nii.gz")
    stacked = nib.load(out)
    np.testing.assert_allclose(stacked.affine, expected_affine, atol=1e-5)
    assert stacked.shape == (6, 5, 3) and np.asarray(stacked.dataobj)[0, 0].tolist() == [0, 1, 2]


def test_expand_volume_records(tmp_path):
    for folder in ("domain1", "domain2"):
        os.makedirs(tmp_path / folder)
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.float32), np.eye(4)), str(tmp_path / folder / "case.nii.gz"))
        nib.save(nib.Nifti1Image(np.ones((4, 4, 2), np.uint8), np.eye(4)), str(tmp_path / folder / "case_gt.nii.gz"))
    records = [
        {"image": str(tmp_path / d / "case.nii.gz"), "label": str(tmp_path / d / "case_gt.nii.gz"), "text": f"{d} LV"}
        for d in ("domain1", "domain2")
    ]
    slices = expand_volume_records(records, tmp_path / "slices")
    assert len(slices) == 4
    assert [s["text"] for s in slices] == ["domain1 LV"] * 2 + ["domain2 LV"] * 2
    assert len({s["image"] for s in slices}) == 4  # same file stem in two domains: no clash
    assert all(os.path.isfile(s["label"]) for s in slices)

    nib.save(nib.Nifti1Image(np.ones((4, 3, 2), np.uint8), np.eye(4)), str(tmp_path / "bad_gt.nii.gz"))
    with pytest.raises(ShapeMismatchError, match="bad_gt.nii.gz"):
        expand_volume_records(
            [{"image": records[0]["image"], "label": str(tmp_path / "bad_gt.nii.gz")}], tmp_path / "other"
        )

"""Per-volume metrics of slice-wise predictions: slices stacked back in order, 3D Dice and HD95 with the voxel size,
as MONAI's DiceMetric and HausdorffDistanceMetric compute them on the stacked volume."""

import csv
import json

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric
from monai_ext.metrics import SegmentationReport, SliceVolumeReport


def _box(shape, r0, r1, c0, c1, value=1):
    mask = np.zeros(shape, np.int64)
    mask[r0:r1, c0:c1] = value
    return mask


def _two_slices():
    """Slice 0: a 4-pixel label found exactly; slice 1: a 12-pixel label of which 6 pixels are predicted."""
    labels = [_box((8, 8), 0, 2, 0, 2), _box((8, 8), 2, 5, 2, 6)]
    preds = [_box((8, 8), 0, 2, 0, 2), _box((8, 8), 2, 5, 2, 4)]
    return preds, labels


def test_volume_dice_is_the_3d_dice_not_the_mean_of_slices():
    preds, labels = _two_slices()
    report = SliceVolumeReport()
    for index in (1, 0):  # out of order: stacked by slice index
        report.add("patient1", index, preds[index], labels[index])
    summary = report.summary()
    assert summary["unit"] == "volume" and summary["num_volumes"] == 1
    volume_dice = summary["per_volume_mean"]["foreground"]["dice"]
    assert volume_dice == pytest.approx(2 * (4 + 6) / (4 + 6 + 4 + 12))  # 0.769
    slices = SegmentationReport()
    for index in (0, 1):
        slices.add(f"slice{index}", preds[index], labels[index])
    assert slices.summary()["per_image_mean"]["foreground"]["dice"] == pytest.approx((1 + 12 / 18) / 2)  # 0.833
    stacked = [torch.as_tensor(np.stack(a, axis=-1))[None, None] for a in (preds, labels)]
    metric = DiceMetric(include_background=True)
    metric(*stacked)
    assert volume_dice == pytest.approx(float(metric.aggregate()))


def test_hd95_uses_the_slice_distance():
    # The label lies in slice 0, the prediction at the same pixels in slice 1: 8 mm apart with 8 mm slices.
    label = [_box((6, 6), 2, 4, 2, 4), np.zeros((6, 6), np.int64)]
    pred = [np.zeros((6, 6), np.int64), _box((6, 6), 2, 4, 2, 4)]
    report = SliceVolumeReport()
    for index in range(2):
        report.add("v", index, pred[index], label[index], spacing=(1.25, 1.25, 8.0))
    hd95 = report.summary()["per_volume_mean"]["foreground"]["hd95"]
    assert hd95 == pytest.approx(8.0)
    metric = HausdorffDistanceMetric(include_background=True, percentile=95)
    onehot = [torch.as_tensor(np.stack(a, axis=-1))[None, None] for a in (pred, label)]
    metric(*onehot, spacing=[1.25, 1.25, 8.0])
    assert hd95 == pytest.approx(float(metric.aggregate()))


def test_regions_and_the_written_per_volume_table(tmp_path):
    report = SliceVolumeReport(num_classes=4, regions={"LV": [1], "MYO": [2], "RV": [3]})
    for volume, shift in (("LGE_6", 0), ("LGE_7", 1)):
        for index in range(3):
            label = _box((16, 16), 4, 12, 4, 12, 2) + _box((16, 16), 6, 10, 6, 10, -1)  # LV 1 inside MYO 2
            label[1:3, 1:3] = 3
            report.add(volume, index, np.roll(label, shift, axis=0), label, spacing=(1.0, 1.0, 2.0), num_slices=3)
    paths = report.write(tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["num_volumes"] == 2 and saved["region_names"] == ["LV", "MYO", "RV"]
    assert saved["per_volume_mean"]["RV"]["dice"] == pytest.approx((1.0 + 0.5) / 2)
    assert "per_image_mean" not in saved and saved["conventions"]["per_volume_mean"].startswith(
        "metrics computed on each 3D"
    )
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert paths["csv"].endswith("per_volume.csv")
    assert [(r["name"], r["num_slices"]) for r in rows] == [("LGE_6", "3"), ("LGE_7", "3")]
    assert "2 volumes." in (tmp_path / "report.md").read_text()


def test_incomplete_and_inconsistent_volumes_are_refused():
    report = SliceVolumeReport()
    slice_ = _box((4, 4), 0, 2, 0, 2)
    report.add("a", 0, slice_, slice_, num_slices=3)
    report.add("a", 2, slice_, slice_)
    with pytest.raises(ValueError, match="volume 'a' has 3 slices but got slices \\[0, 2\\] \\(missing \\[1\\]"):
        report.report()
    with pytest.raises(ValueError, match="slice 2 of volume 'a' was already added"):
        report.add("a", 2, slice_, slice_)
    with pytest.raises(ValueError, match="says the volume has 4 slices, an earlier one 3"):
        report.add("a", 1, slice_, slice_, num_slices=4)
    report.add("b", 0, slice_, slice_, spacing=(1, 1, 8))
    with pytest.raises(ValueError, match="slice 1 of volume 'b' has spacing \\(1.0, 1.0, 5.0\\), its other slices"):
        report.add("b", 1, slice_, slice_, spacing=(1, 1, 5))
    with pytest.raises(ValueError, match="expected three values"):
        report.add("c", 0, slice_, slice_, spacing=(1, 1))
    with pytest.raises(ValueError, match="expected a 2D index map"):
        report.add("d", 0, np.zeros((2, 4, 4)), slice_)
    with pytest.raises(ValueError, match="no slices were added"):
        SliceVolumeReport().report()
    with pytest.raises(ValueError, match="unit must be one of"):
        SegmentationReport(unit="slice")

import csv
import json
import math

import numpy as np
import pytest
import torch
from monai_ext.metrics import SegmentationReport


def _mask(shape, *boxes, value=1):
    mask = np.zeros(shape, dtype=np.int64)
    for r0, r1, c0, c1 in boxes:
        mask[r0:r1, c0:c1] = value
    return mask


def test_per_image_mean_and_dataset_level_differ_as_computed_by_hand():
    report = SegmentationReport()
    # Image 1: small lesion (4 px) found exactly: Dice 1, IoU 1.
    report.add("small", _mask((8, 8), (0, 2, 0, 2)), _mask((8, 8), (0, 2, 0, 2)))
    # Image 2: large lesion (16 px), half of it predicted (8 px): Dice 2*8/(8+16) = 2/3, IoU 8/16 = 1/2.
    record = report.add(
        "large", torch.as_tensor(_mask((8, 8), (2, 4, 2, 6))), torch.as_tensor(_mask((8, 8), (2, 6, 2, 6)))
    )
    assert record["foreground"]["dice"] == pytest.approx(2 / 3)
    summary = report.summary()
    assert summary["num_images"] == 2
    assert summary["per_image_mean"]["foreground"]["dice"] == pytest.approx((1 + 2 / 3) / 2)
    assert summary["per_image_mean"]["foreground"]["iou"] == pytest.approx((1 + 1 / 2) / 2)
    # Dataset level: intersections 4 + 8, predictions 4 + 8, labels 4 + 16, unions 4 + 16.
    assert summary["dataset_level"]["foreground"]["dice"] == pytest.approx(2 * 12 / (12 + 20))
    assert summary["dataset_level"]["foreground"]["iou"] == pytest.approx(12 / 20)


def test_hd95_and_nsd_by_hand_with_spacing():
    pred, label = _mask((9, 9), (2, 3, 2, 3)), _mask((9, 9), (2, 3, 6, 7))  # single pixels 4 columns apart
    record = SegmentationReport(nsd_tolerance=2.0).add("a", pred, label)["foreground"]
    assert (record["dice"], record["iou"], record["hd95"], record["nsd"]) == (0.0, 0.0, pytest.approx(4.0), 0.0)
    assert record["case"] == "both_present"
    assert SegmentationReport(nsd_tolerance=4.0).add("a", pred, label)["foreground"]["nsd"] == pytest.approx(1.0)
    scaled = SegmentationReport(spacing=(1.0, 0.5), nsd_tolerance=2.0).add("a", pred, label)["foreground"]
    assert scaled["hd95"] == pytest.approx(2.0) and scaled["nsd"] == pytest.approx(1.0)
    per_image_spacing = SegmentationReport().add("a", pred, label, spacing=(1.0, 0.25))["foreground"]
    assert per_image_spacing["hd95"] == pytest.approx(1.0)


def test_empty_mask_rules_and_counts():
    report = SegmentationReport()
    lesion = _mask((6, 6), (1, 3, 1, 3))
    empty = np.zeros((6, 6), dtype=np.int64)
    both = report.add("both_empty", empty, empty[None])["foreground"]
    missed = report.add("missed", empty, lesion)["foreground"]
    false_positive = report.add("false_positive", lesion.astype(bool), empty)["foreground"]
    report.add("hit", lesion, lesion)
    assert both == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "nsd": 1.0, "case": "both_empty"}
    for record, case in ((missed, "pred_empty"), (false_positive, "label_empty")):
        assert record["dice"] == 0.0 and record["iou"] == 0.0 and record["nsd"] == 0.0
        assert math.isnan(record["hd95"]) and record["case"] == case
    summary = report.summary()
    assert summary["counts"]["foreground"] == {
        "both_empty": 1,
        "pred_empty": 1,
        "label_empty": 1,
        "hd95_undefined": 2,
        "hd95_defined": 2,
    }
    assert summary["per_image_mean"]["foreground"]["dice"] == pytest.approx((1 + 0 + 0 + 1) / 4)
    assert summary["per_image_mean"]["foreground"]["hd95"] == pytest.approx(0.0)  # mean of the two defined (0, 0)
    # Dataset level: intersection 4, predictions 4 + 4, labels 4 + 4.
    assert summary["dataset_level"]["foreground"]["dice"] == pytest.approx(2 * 4 / 16)


def test_multi_class_index_maps():
    label = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 2, 2], [0, 0, 2, 2]])
    pred = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 2, 2], [0, 2, 2, 2]])
    report = SegmentationReport(num_classes=4, class_names=["lung", "lesion", "heart"])
    record = report.add("case", pred, label)
    assert report.class_names == ["lung", "lesion", "heart"]
    assert record["lung"]["dice"] == pytest.approx(2 * 3 / (3 + 4)) and record["lung"]["iou"] == pytest.approx(3 / 4)
    assert record["lesion"]["dice"] == pytest.approx(2 * 4 / (5 + 4)) and record["lesion"]["iou"] == pytest.approx(
        4 / 5
    )
    assert record["heart"]["case"] == "both_empty"
    summary = report.summary()
    expected_mean = (6 / 7 + 8 / 9 + 1.0) / 3
    assert summary["per_image_mean"]["mean_over_classes"]["dice"] == pytest.approx(expected_mean)
    with_background = SegmentationReport(num_classes=4, include_background=True).add("case", pred, label)
    # Background: 8 label pixels, 8 predicted, 7 in common.
    assert with_background["background"]["dice"] == pytest.approx(2 * 7 / (8 + 8))


def test_binary_with_background_reports_both_classes():
    report = SegmentationReport(include_background=True, class_names=["lesion"])
    assert report.class_names == ["background", "lesion"]
    record = report.add("a", _mask((4, 4), (0, 2, 0, 2)), _mask((4, 4), (0, 2, 0, 4)))
    assert record["background"]["dice"] == pytest.approx(2 * 8 / (12 + 8))
    assert record["lesion"]["dice"] == pytest.approx(2 * 4 / (4 + 8))


def test_bad_inputs_name_the_image():
    report = SegmentationReport()
    lesion = _mask((4, 4), (0, 2, 0, 2))
    with pytest.raises(ValueError, match="'img7'.*0/255"):
        report.add("img7", lesion, lesion * 255)
    with pytest.raises(ValueError, match="'img8'.*non-integer"):
        report.add("img8", lesion * 0.7, lesion)
    with pytest.raises(ValueError, match="'img9'.*differs"):
        report.add("img9", lesion, lesion[:2])
    with pytest.raises(ValueError, match="argmax"):
        report.add("img10", np.stack([lesion, lesion]), np.stack([lesion, lesion]))
    report.add("img11", lesion, lesion)
    with pytest.raises(ValueError, match="already added"):
        report.add("img11", lesion, lesion)
    with pytest.raises(ValueError, match="class_names"):
        SegmentationReport(num_classes=3, class_names=["a"])


def test_write_outputs_atomically_and_refuses_overwrite(tmp_path):
    report = SegmentationReport()
    lesion = _mask((6, 6), (1, 3, 1, 3))
    report.add("hit", lesion, lesion, extra={"text": "Opacity in the left lower lobe."})
    report.add("missed", np.zeros_like(lesion), lesion, extra={"text": "Bilateral, small."})
    paths = report.write(tmp_path)
    with open(paths["json"]) as f:
        saved = json.load(f)
    assert saved["num_images"] == 2
    assert saved["per_image_mean"]["foreground"]["dice"] == pytest.approx(0.5)
    assert saved["per_image_mean"]["foreground"]["hd95"] == 0.0
    with open(paths["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["hit", "missed"]
    assert rows[1]["foreground_case"] == "pred_empty" and rows[1]["text"] == "Bilateral, small."
    assert float(rows[0]["foreground_dice"]) == 1.0 and math.isnan(float(rows[1]["foreground_hd95"]))
    markdown = (tmp_path / "report.md").read_text()
    assert "| foreground | 50.00 |" in markdown and "1 undefined" in markdown
    with pytest.raises(FileExistsError, match="report.json"):
        report.write(tmp_path)
    report.add("third", lesion, lesion)
    report.write(tmp_path, overwrite=True)
    assert json.loads((tmp_path / "report.json").read_text())["num_images"] == 3


def test_empty_report_summary_is_undefined_not_perfect():
    summary = SegmentationReport().summary()
    assert summary["num_images"] == 0
    assert summary["per_image_mean"]["foreground"]["dice"] is None
    assert summary["dataset_level"]["foreground"]["dice"] is None


def test_volumes_with_spatial_dims_3():
    label = np.zeros((1, 5, 5, 4), dtype=np.int64)
    label[0, 1:3, 1:3, 1:3] = 1  # 8 voxels
    pred = label.copy()
    pred[0, 1:3, 1:3, 2] = 0  # 4 voxels kept
    report = SegmentationReport(spatial_dims=3)
    assert report.add("vol", pred, label)["foreground"]["dice"] == pytest.approx(2 * 4 / (4 + 8))
    with pytest.raises(ValueError, match="spatial_dims=3"):
        SegmentationReport().add("vol", pred, label)


def test_regions_are_unions_of_label_values():
    # Fundus-style exclusive classes: 1 rim, 2 cup; the disc region is {1, 2}.
    label = np.zeros((8, 8), dtype=np.int64)
    label[1:7, 1:7] = 1
    label[3:5, 3:5] = 2  # cup: 4 px, rim: 32 px, disc: 36 px
    pred = label.copy()
    pred[3:5, 3:5] = 1  # the cup predicted as rim: disc right, cup missed
    regions = {"optic disc": [1, 2], "optic cup": [2]}
    report = SegmentationReport(num_classes=3, regions=regions)
    record = report.add("eye", pred, label)
    assert report.class_names == ["optic disc", "optic cup"]
    assert record["optic disc"]["dice"] == pytest.approx(1.0) and record["optic disc"]["case"] == "both_present"
    cup = record["optic cup"]
    assert (cup["dice"], cup["nsd"], cup["case"]) == (0.0, 0.0, "pred_empty") and math.isnan(cup["hd95"])
    summary = report.summary()
    assert summary["region_names"] == ["optic disc", "optic cup"] and "classes" not in summary
    assert summary["regions"] == regions
    assert summary["per_image_mean"]["mean_over_regions"]["dice"] == pytest.approx(0.5)
    assert summary["dataset_level"]["mean_over_regions"]["dice"] == pytest.approx(0.5)
    assert summary["counts"]["optic cup"]["pred_empty"] == 1
    # The rim as a class gives the same numbers as a one-label region; per-class reports keep their layout.
    by_class = SegmentationReport(num_classes=3, class_names=["rim", "cup"])
    assert by_class.add("eye", pred, label)["rim"]["dice"] == pytest.approx(2 * 32 / (36 + 32))
    rim = SegmentationReport(num_classes=3, regions={"rim": [1]}).add("eye", pred, label)["rim"]
    assert rim["dice"] == pytest.approx(2 * 32 / (36 + 32))
    assert "regions" not in by_class.summary() and "mean_over_regions" not in by_class.summary()["per_image_mean"]


def test_region_report_files_and_a_single_region_keeps_its_mean(tmp_path):
    report = SegmentationReport(num_classes=3, regions={"optic disc": [1, 2], "optic cup": [2]})
    label = _mask((6, 6), (1, 5, 1, 5))
    label[2:4, 2:4] = 2
    report.add("eye", label, label, extra={"text": "Glaucoma suspect."})
    report.write(tmp_path)
    with open(tmp_path / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["name"] == "eye" and float(rows[0]["optic disc_dice"]) == 1.0
    assert rows[0]["optic cup_case"] == "both_present" and rows[0]["text"] == "Glaucoma suspect."
    markdown = (tmp_path / "report.md").read_text()
    assert "| region | labels | Dice per-image mean (%) |" in markdown
    assert "| optic disc | 1,2 | 100.00 |" in markdown and "| optic cup | 2 | 100.00 |" in markdown
    assert "| mean_over_regions |  | 100.00 |" in markdown
    single = SegmentationReport(regions={"lesion": [1]})
    single.add("a", label > 0, label > 0)
    assert single.summary()["per_image_mean"]["mean_over_regions"]["dice"] == 1.0


def test_bad_regions_are_refused():
    with pytest.raises(ValueError, match="Region 'cup'.*0..2"):
        SegmentationReport(num_classes=3, regions={"cup": [3]})
    with pytest.raises(ValueError, match="Region 'disc'"):
        SegmentationReport(num_classes=3, regions={"disc": []})
    with pytest.raises(ValueError, match="at least one region"):
        SegmentationReport(num_classes=3, regions={})
    with pytest.raises(ValueError, match="include_background"):
        SegmentationReport(num_classes=3, regions={"disc": [1, 2]}, include_background=True)

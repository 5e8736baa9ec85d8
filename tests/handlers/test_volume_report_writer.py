"""Per-volume reports from an evaluator over slices: the VLSA-Net evaluation pipeline records each slice's voxel size
(RecordSpacingd with slice_spacing_key), VolumeReportWriter stacks the slices of each volume back and measures HD95 in
millimetres along the slice axis too."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.bundle import ConfigParser
from monai.transforms import LoadImaged
from monai_ext.data import RecordSpacingd, VolumeSlicer
from monai_ext.handlers import VolumeReportWriter
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_slice_spacing_is_the_distance_between_the_slices_of_the_volume(tmp_path):
    affine = np.diag([1.25, 1.5, 8.0, 1.0])
    nib.save(
        nib.Nifti1Image(np.random.default_rng(0).random((20, 16, 3)).astype(np.float32), affine), tmp_path / "v.nii"
    )
    nib.save(nib.Nifti1Image(np.zeros((20, 16, 3), np.uint8), affine), tmp_path / "v_label.nii")
    record = VolumeSlicer().slice(tmp_path / "v.nii", tmp_path / "slices", tmp_path / "v_label.nii")[1]
    parser = ConfigParser()
    parser.read_config([os.path.join(REPO, "bundles", "vlsanet", "configs", n) for n in ("train.json", "cardiac.json")])
    parser.update({"bundle_root": os.path.join(REPO, "bundles", "vlsanet"), "image_size": 32})
    item = parser.get_parsed_content("validate#preprocessing")({"image": record["image"], "label": record["label"]})
    torch.testing.assert_close(item["spacing"], torch.tensor([20 * 1.25 / 32, 16 * 1.5 / 32], dtype=torch.float64))
    assert float(item["slice_spacing"]) == pytest.approx(8.0)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    picture = RecordSpacingd("image", slice_spacing_key="slice_spacing")
    loaded = LoadImaged("image", ensure_channel_first=True)({"image": str(tmp_path / "x.png")})
    assert float(picture(loaded)["slice_spacing"]) == 1.0  # a picture has no slice axis


def _run(writer, batches):
    engine = Engine(lambda engine, batch: [{"pred": item["pred"], "label": item["label"]} for item in batch])
    writer.attach(engine)
    engine.run(batches, max_epochs=1)


def _item(name, index, pred, label, **extra):
    return {"name": name, "slice_index": torch.tensor(index), "pred": pred[None], "label": label[None], **extra}


def test_slices_of_a_volume_are_stacked_and_measured_in_millimetres(tmp_path):
    square = torch.zeros(6, 6)
    square[2:4, 2:4] = 1
    empty = torch.zeros(6, 6)
    spacing = {"spacing": torch.tensor([1.25, 1.25]), "slice_spacing": torch.tensor(8.0), "num_slices": torch.tensor(2)}
    # Volume "a": label in slice 0, prediction in slice 1 (8 mm apart); volume "b" exact. Batches mix the volumes.
    batches = [
        [_item("a", 1, square, empty, **spacing), _item("b", 0, square, square, **spacing)],
        [_item("a", 0, empty, square, **spacing), _item("b", 1, square, square, **spacing)],
    ]
    _run(VolumeReportWriter(str(tmp_path / "volumes"), regions={"square": [1]}), batches)
    report = json.loads((tmp_path / "volumes" / "report.json").read_text())
    assert report["num_volumes"] == 2
    assert report["per_volume_mean"]["square"]["dice"] == pytest.approx(0.5)  # volume a: 0, volume b: 1
    assert report["per_volume_mean"]["square"]["hd95"] == pytest.approx(4.0)  # (8 mm + 0) / 2
    assert (tmp_path / "volumes" / "per_volume.csv").is_file()


def test_items_without_their_volume_are_refused(tmp_path):
    square = torch.ones(4, 4)
    with pytest.raises(
        ValueError, match="needs each item's volume 'name', 'slice_index' and 'label'.*\\['slice_index'\\]"
    ):
        _run(VolumeReportWriter(str(tmp_path)), [[{"name": "a", "pred": square[None], "label": square[None]}]])
    batches = [[_item("a", 0, square, square, num_slices=torch.tensor(2))]]
    with pytest.raises(ValueError, match="volume 'a' has 2 slices but got slices \\[0\\]"):
        _run(VolumeReportWriter(str(tmp_path)), batches)
    assert not (tmp_path / "report.json").exists()

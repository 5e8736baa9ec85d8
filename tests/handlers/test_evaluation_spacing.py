"""Distances in the image's own units: RecordSpacingd keeps the spacing after resizing (and after the metadata is
dropped), the evaluation writers hand it to the metrics, and the TGC-Net bundle's evaluation pipeline records it."""

import json
import os

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.bundle import ConfigParser
from monai.transforms import Compose, LoadImaged, Resized
from monai_ext.data import RecordSpacingd
from monai_ext.handlers import SegmentationReportWriter
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_spacing_follows_the_resize(tmp_path):
    path = str(tmp_path / "wide.png")
    Image.fromarray(np.zeros((60, 80), np.uint8)).save(path)  # 80 wide, 60 high
    pipeline = Compose(
        [LoadImaged("image", ensure_channel_first=True), Resized("image", (40, 40)), RecordSpacingd("image")]
    )
    spacing = pipeline({"image": path})["spacing"]
    torch.testing.assert_close(spacing, torch.tensor([2.0, 1.5], dtype=torch.float64))
    plain = RecordSpacingd("image")({"image": torch.zeros(1, 4, 4, 4)})["spacing"]
    torch.testing.assert_close(plain, torch.ones(3, dtype=torch.float64))  # no metadata: unit spacing
    with pytest.raises(ValueError, match="one image key"):
        RecordSpacingd(["image", "label"])


def _evaluate(writer, spacing):
    """Run ``writer`` on one image whose predicted square is shifted 3 pixels from the label's."""
    label = torch.zeros(1, 32, 32)
    label[:, 8:20, 8:20] = 1
    pred = torch.roll(label, shifts=3, dims=1)
    batch = [{"name": "case", **({"spacing": torch.tensor(spacing)} if spacing else {})}]
    engine = Engine(lambda engine, batch: [{"pred": pred, "label": label}])
    writer.attach(engine)
    engine.run([batch], max_epochs=1)


@pytest.mark.parametrize("spacing, expected", [(None, 3.0), ([2.0, 2.0], 6.0), ([0.5, 1.0], 1.5)])
def test_writers_measure_distances_in_the_recorded_spacing(tmp_path, spacing, expected):
    _evaluate(SegmentationReportWriter(str(tmp_path / "binary")), spacing)
    report = json.loads((tmp_path / "binary" / "report.json").read_text())
    assert report["per_image_mean"]["foreground"]["hd95"] == pytest.approx(expected)
    _evaluate(SegmentationReportWriter(str(tmp_path / "regions"), regions={"square": [1]}), spacing)
    report = json.loads((tmp_path / "regions" / "report.json").read_text())
    assert report["per_image_mean"]["square"]["hd95"] == pytest.approx(expected)
    assert report["regions"] == {"square": [1]}


def test_tgcnet_evaluation_pipeline_records_the_spacing(tmp_path):
    Image.fromarray(np.full((64, 64), 100, np.uint8)).save(tmp_path / "x.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "x_mask.png")
    parser = ConfigParser()
    parser.read_config(os.path.join(REPO, "bundles", "tgcnet", "configs", "train.json"))
    parser.update(
        {
            "bundle_root": os.path.join(REPO, "bundles", "tgcnet"),
            "clip_model_name": "monai-textseg-tiny-clip",
            "image_size": 32,
        }
    )
    item = parser.get_parsed_content("validate#preprocessing")(
        {"image": str(tmp_path / "x.png"), "label": str(tmp_path / "x_mask.png"), "text": "Infection."}
    )
    torch.testing.assert_close(item["spacing"], torch.tensor([2.0, 2.0], dtype=torch.float64))
    assert not hasattr(item["image"], "meta")  # the metadata itself is dropped, as before

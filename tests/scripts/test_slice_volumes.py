"""scripts/slice_volumes.py: cardiac volumes become the 2D slices (and per-domain datalists) the 2D VLSA-Net bundle
reads, which refuses the volumes themselves."""

import json
import os

import nibabel as nib
import pytest
from monai.bundle import ConfigParser
from monai_ext.data import ImageReadError
from monai_ext.demo import make_cardiac_dataset
from script_loader import load_script

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_volumes_become_slices_the_bundle_reads(tmp_path, capsys):
    volumes, slices = tmp_path / "volumes", tmp_path / "slices"
    make_cardiac_dataset(str(volumes), n_per_domain=2, image_size=32, slices=3, seed=0, domains=["bssfp", "lge"])
    counts = load_script("slice_volumes").main(str(volumes), str(slices), domains="bssfp")
    assert counts == {"bssfp": {"training": 3, "test": 3}}  # 1 + 1 volumes of 3 slices
    assert "bssfp/datalist.json" in capsys.readouterr().out and not (slices / "lge").exists()
    with open(slices / "bssfp" / "datalist.json") as f:
        first = json.load(f)["training"][0]
    slice_path = os.path.join(slices, "bssfp", first["image"])
    assert nib.load(slice_path).ndim == 2

    parser = ConfigParser()
    configs = os.path.join(REPO, "bundles", "vlsanet", "configs")
    parser.read_config([os.path.join(configs, "train.json"), os.path.join(configs, "cardiac.json")])
    load = parser.get_parsed_content("load_transforms#0")
    item = load({"image": slice_path, "label": os.path.join(slices, "bssfp", first["label"])})
    assert item["image"].shape == (1, 32, 32) and item["label"].shape == (1, 32, 32)
    with open(volumes / "bssfp" / "datalist.json") as f:
        volume = json.load(f)["training"][0]
    with pytest.raises(ImageReadError, match="is 3D .*slice volumes first"):
        load({"image": str(volumes / "bssfp" / volume["image"]), "label": str(volumes / "bssfp" / volume["label"])})

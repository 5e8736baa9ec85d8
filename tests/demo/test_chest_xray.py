"""Synthetic report-referred chest X-rays: files, determinism, and agreement between reports, masks and zone maps."""

import itertools
import json
import os

import numpy as np
import pytest
from lvit_files import assert_lvit_tables, read_png, tree_bytes
from monai_ext.demo import LUNG_ZONES, compose_report, make_chest_xray_dataset, mask_for_zones, parse_report_zones
from PIL import Image
from scipy import ndimage

SIZE = 64


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("cxr") / "data"
    summary = make_chest_xray_dataset(out, n_train=6, n_val=2, n_test=3, image_size=SIZE, seed=5)
    with open(out / "datalist.json") as f:
        return str(out), summary, json.load(f)


def test_lvit_layout_and_datalist(dataset):
    root, summary, datalist = dataset
    assert summary["counts"] == {"training": 6, "validation": 2, "test": 3}
    assert summary["datalist"] == os.path.join(root, "datalist.json")
    assert_lvit_tables(root, datalist)
    for key, n in (("training", 6), ("validation", 2), ("test", 3)):
        items = datalist[key]
        assert len(items) == n
        for item in items:
            image, mask = read_png(root, item["image"]), read_png(root, item["label"])
            assert image.shape == mask.shape == (SIZE, SIZE) and image.dtype == mask.dtype == np.uint8


def test_report_mask_and_zone_map_agree(dataset):
    root, _, datalist = dataset
    for item in itertools.chain(*datalist.values()):
        named = parse_report_zones(item["text"])
        assert named == item["zones_named"]
        assert 1 <= len(named) and set(named) <= set(item["zones_present"])
        zone_map = read_png(root, item["zone_map"])
        # every drawn lesion has its own zone value; nothing else is marked
        assert sorted(set(np.unique(zone_map)) - {0}) == [LUNG_ZONES.index(z) + 1 for z in item["zones_present"]]
        np.testing.assert_array_equal(
            mask_for_zones(zone_map, named).astype(np.uint8) * 255, read_png(root, item["label"])
        )


def test_lesions_are_bright_single_blobs_on_the_patients_side(dataset):
    root, _, datalist = dataset
    for item in itertools.chain(*datalist.values()):
        zone_map, image = read_png(root, item["zone_map"]), read_png(root, item["image"]).astype(float)
        columns = {}
        for zone in item["zones_present"]:
            lesion = zone_map == LUNG_ZONES.index(zone) + 1
            assert ndimage.label(lesion)[1] == 1
            surround = ndimage.binary_dilation(lesion, iterations=3) & ~lesion & (zone_map == 0)
            assert image[lesion].mean() > image[surround].mean()
            columns[zone] = np.argwhere(lesion)[:, 1].mean()
        # Patient's left lung is on the image's right.
        for zone, column in columns.items():
            assert (column > SIZE / 2) == zone.endswith("left")


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    kwargs = dict(n_train=2, n_val=1, n_test=1, image_size=SIZE)
    make_chest_xray_dataset(tmp_path / "a", seed=1, **kwargs)
    make_chest_xray_dataset(tmp_path / "b", seed=1, **kwargs)
    make_chest_xray_dataset(tmp_path / "c", seed=2, **kwargs)
    a, b, c = (tree_bytes(tmp_path / name) for name in "abc")
    assert len(a) == 4 * 3 + 3 + 2  # image, mask, zone map per sample; a CSV per split; datalist and marker
    assert a == b
    assert a.keys() == c.keys()
    assert a["Train_Folder/img/train_0000.png"] != c["Train_Folder/img/train_0000.png"]


def test_sample_does_not_depend_on_counts(tmp_path):
    make_chest_xray_dataset(tmp_path / "small", n_train=1, n_val=0, n_test=0, image_size=SIZE)
    make_chest_xray_dataset(tmp_path / "large", n_train=3, n_val=1, n_test=0, image_size=SIZE)
    small, large = tree_bytes(tmp_path / "small"), tree_bytes(tmp_path / "large")
    for name in ("img/train_0000.png", "labelcol/mask_train_0000.png", "labelzones/zones_train_0000.png"):
        assert small[f"Train_Folder/{name}"] == large[f"Train_Folder/{name}"]


def test_name_all_lesions_keeps_images_and_names_everything(tmp_path):
    kwargs = dict(n_train=4, n_val=0, n_test=0, image_size=SIZE, seed=3)
    make_chest_xray_dataset(tmp_path / "subset", **kwargs)
    make_chest_xray_dataset(tmp_path / "all", name_all_lesions=True, **kwargs)
    with open(tmp_path / "subset" / "datalist.json") as f:
        subset = json.load(f)["training"]
    with open(tmp_path / "all" / "datalist.json") as f:
        everything = json.load(f)["training"]
    assert any(len(s["zones_named"]) < len(s["zones_present"]) for s in subset)  # reports do refer to subsets
    for s, a in zip(subset, everything):
        assert a["zones_named"] == a["zones_present"] == s["zones_present"]
        assert parse_report_zones(a["text"]) == a["zones_present"]
        assert tree_bytes(tmp_path / "subset")[s["image"]] == tree_bytes(tmp_path / "all")[a["image"]]
        assert (read_png(tmp_path / "all", a["label"]) > 0).sum() == (
            read_png(tmp_path / "all", a["zone_map"]) > 0
        ).sum()


def test_compose_and_parse_are_inverse_for_every_zone_subset():
    rng = np.random.default_rng(0)
    for n in range(1, 5):
        for zones in itertools.combinations(LUNG_ZONES, n):
            for generator in (None, rng, rng):
                report = compose_report(list(reversed(zones)), generator)
                assert parse_report_zones(report) == list(zones)
                bilateral = {z.split()[1] for z in zones} == {"left", "right"}
                assert report.startswith("Bilateral" if bilateral else "Unilateral")


def test_parse_accepts_qata_phrasing_and_word_order():
    report = "Bilateral pulmonary infection, two infected areas, upper left lung and Lower Right lung."
    assert parse_report_zones(report) == ["upper left", "lower right"]
    other_phrasing = "Left middle lung and the lower zone of the right lung."
    assert parse_report_zones(other_phrasing) == ["middle left", "lower right"]
    assert parse_report_zones("No zone mentioned.") == []
    assert compose_report(["middle right"]) == "Unilateral pulmonary infection, one infected area, middle right lung."


@pytest.mark.parametrize("zones", [[], ["upper centre"], ["upper left", "upper left"], "upper left"])
def test_compose_report_rejects_bad_zones(zones):
    with pytest.raises(ValueError):
        compose_report(zones)


def test_mask_for_zones_selects_only_requested_zones():
    zone_map = np.array([[0, 1, 1], [4, 4, 0], [0, 0, 6]], np.uint8)
    expected = np.array([[0, 1, 1], [0, 0, 0], [0, 0, 1]], bool)
    np.testing.assert_array_equal(mask_for_zones(zone_map, ["upper left", "lower right"]), expected)
    assert not mask_for_zones(zone_map, ["middle left"]).any()
    with pytest.raises(ValueError, match="integer"):
        mask_for_zones(zone_map.astype(float), ["upper left"])


def test_rereported_splits_counterfactual_and_generic(tmp_path):
    from monai_ext.data import load_lvit_split
    from monai_ext.demo import make_rereported_split

    source = tmp_path / "cxr"
    make_chest_xray_dataset(source, n_train=0, n_val=0, n_test=24, image_size=64, seed=3)
    original = {r["name"]: r for r in json.load(open(source / "datalist.json"))["test"]}

    summary = make_rereported_split(source, tmp_path / "cf", splits="test", seed=1)
    single = sum(len(r["zones_present"]) == 1 for r in original.values())
    assert summary["skipped"]["test"] == single and summary["counts"]["test"] == len(original) - single > 0
    for record in load_lvit_split(tmp_path / "cf", "Test"):
        zones = parse_report_zones(record["text"])
        assert zones != original[record["name"]]["zones_named"]
        assert set(zones) <= set(original[record["name"]]["zones_present"])
        zone_map = np.asarray(Image.open(tmp_path / "cf" / original[record["name"]]["zone_map"]))
        mask = np.asarray(Image.open(record["label"])) > 0
        np.testing.assert_array_equal(mask, mask_for_zones(zone_map, zones))

    make_rereported_split(source, tmp_path / "generic", splits=["test"], mode="generic", prompt="Lungs.")
    generic = load_lvit_split(tmp_path / "generic", "Test")
    assert len(generic) == len(original) and {r["text"] for r in generic} == {"Lungs."}
    with pytest.raises(ValueError, match="splits"):
        make_rereported_split(source, tmp_path / "bad", splits="train")
    with pytest.raises(FileExistsError):
        make_rereported_split(source, tmp_path / "cf", splits="test")

"""Label maps checked against the label files: background the most frequent class, the cup inside the disc rim and
the LV cavity inside the myocardium, known releases recognised, the right map named when the given one is wrong."""

import os

import nibabel as nib
import numpy as np
import pytest
from monai_ext.data import (
    LABEL_MAPS,
    MSCMRSEG_LABEL_MAP,
    LabelMapError,
    check_domain_labels,
    check_label_map,
    known_label_releases,
    label_map_from_values,
    prepare_cardiac_domains,
    prepare_fundus_domains,
    sample_label_files,
)
from monai_ext.demo import make_cardiac_dataset, make_demo_data, make_fundus_dataset
from PIL import Image

SIZE = 64


def _disc_and_cup(i: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size // 2 - i % 3, xx - size // 2 + i % 2)
    return r < 14 + i % 3, r < 6 + i % 2


def _fundus_masks(folder, n: int, background: int, rim: int, cup: int) -> list[str]:
    """n disc/cup masks with the given stored values, as PNG files."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(n):
        disc, inner = _disc_and_cup(i)
        mask = np.full((SIZE, SIZE), background, np.uint8)
        mask[disc], mask[inner] = rim, cup
        paths.append(os.path.join(folder, f"mask_{i:02d}.png"))
        Image.fromarray(mask).save(paths[-1])
    return paths


def _heart(slices: int = 4, size: int = SIZE, shift: int = 0) -> dict[str, np.ndarray]:
    """LV cavity, myocardium ring and RV of a short-axis volume; the first slice is empty (beyond the apex)."""
    yy, xx = np.mgrid[:size, :size]
    r_lv = np.hypot(yy - size // 2, xx - size // 2 + 6 + shift)
    lv, ring = r_lv < 8, (r_lv >= 8) & (r_lv < 13)
    rv = (np.hypot(yy - size // 2, xx - size // 2 - 13 + shift) < 9) & ~lv & ~ring
    parts = {}
    for name, part in (("lv", lv), ("myo", ring), ("rv", rv)):
        volume = np.repeat(part[..., None], slices, axis=-1)
        volume[..., 0] = False
        parts[name] = volume
    return parts


def _cardiac_volumes(folder, n: int, values: dict[str, int]) -> list[str]:
    """n label volumes (NIfTI, int16) storing LV/myocardium/RV as ``values``."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(n):
        parts = _heart(shift=i % 3)
        label = np.zeros(parts["lv"].shape, np.int16)
        for name, part in parts.items():
            label[part] = values[name]
        paths.append(os.path.join(folder, f"patient{i}_manual.nii.gz"))
        nib.save(nib.Nifti1Image(label, np.eye(4)), paths[-1])
    return paths


OURS = {"lv": 1, "myo": 2, "rv": 3}
SLAUG = {"myo": 1, "lv": 2, "rv": 3}


def test_correct_fundus_maps_pass(tmp_path):
    refuge = _fundus_masks(tmp_path / "refuge", 6, background=255, rim=128, cup=0)
    summary = check_label_map(refuge, "refuge", "fundus")
    assert summary["map"] == {"0": 2, "128": 1, "255": 0}
    assert summary["class_counts"]["background"] > summary["class_counts"]["optic disc rim"]
    assert summary["nesting"]["optic cup in optic disc rim"] == {"slices": 6, "open_fraction": 0.0}
    assert "REFUGE" in summary["release"][0]
    index = _fundus_masks(tmp_path / "index", 3, background=0, rim=1, cup=2)
    assert check_label_map(index, {}, "fundus")["map"] == {"0": 0, "1": 1, "2": 2}


def test_ccsdg_masks_with_the_refuge_map_fail_and_name_the_ccsdg_map(tmp_path):
    # CCSDG's RIGA loader: 0 background, any non-zero value disc, 128 cup (so 255 is the disc rim).
    files = _fundus_masks(tmp_path / "BinRushed" / "mask", 20, background=0, rim=255, cup=128)
    assert check_label_map(files, "ccsdg", "fundus")["map"] == {"0": 0, "128": 2, "255": 1}
    with pytest.raises(LabelMapError) as caught:
        check_label_map(files, LABEL_MAPS["refuge"], "fundus", map_name="refuge", where="domain 'BinRushed'")
    message = str(caught.value)
    assert "Label map 'refuge' contradicts the fundus label files of domain 'BinRushed'" in message
    assert f"Files checked (20, under {tmp_path / 'BinRushed' / 'mask'}): mask_00.png, mask_01.png" in message
    assert "Pixels per value: 0: " in message and "128: " in message and "255: " in message
    assert "- background: the map makes value 255 background, but value 0" in message
    assert "is the most frequent value, in 20 of 20 files (background?)" in message
    assert "the map's background is the most frequent class in 0 of 20 files" in message
    assert "- nesting: the optic cup (value 0) should lie inside the optic disc rim (value 128)" in message
    assert "The map 'ccsdg' (CCSDG's RIGA+ masks: 0 background, 255 disc rim, 128 cup) passes both checks" in message
    assert "--label_map ccsdg" in message and "--check_label_map False" in message
    assert "'refuge' (" not in message  # the wrong map is not offered
    assert isinstance(caught.value, ValueError)


def test_stored_values_that_are_not_classes_fail_with_the_fitting_map(tmp_path):
    files = _fundus_masks(tmp_path, 4, background=255, rim=128, cup=0)
    with pytest.raises(LabelMapError, match="(?s)values: the map leaves values 128, 255 as 128, 255.*map 'refuge'"):
        check_label_map(files, "index", "fundus")


def test_swapped_lv_and_myocardium_fail_and_name_the_slaug_map(tmp_path):
    files = _cardiac_volumes(tmp_path / "slaug", 3, SLAUG)
    with pytest.raises(LabelMapError) as caught:
        check_label_map(files, "index", "cardiac")
    message = str(caught.value)
    assert "- nesting: the left ventricle (value 1) should lie inside the myocardium (value 2)" in message
    assert "open in 9 of the 9 slices holding both" in message
    assert "ours (1 LV, 2 myocardium) or SLAug's (1 myocardium, 2 LV)" in message
    assert "The map 'slaug'" in message and "label_orig_values=[1, 2], label_target_values=[2, 1]" in message
    summary = check_label_map(files, "slaug", "cardiac")
    assert summary["nesting"]["left ventricle in myocardium"] == {"slices": 9, "open_fraction": 0.0}


def test_an_unnamed_release_order_is_found_as_a_class_permutation(tmp_path):
    files = _cardiac_volumes(tmp_path, 2, {"rv": 1, "lv": 2, "myo": 3})
    with pytest.raises(LabelMapError) as caught:
        check_label_map(files, {}, "cardiac")
    message = str(caught.value)
    assert "Label map 'index' contradicts" in message
    assert (
        "The class permutation 0 background, 2 left ventricle, 3 myocardium, 1 right ventricle passes both checks: "
        "label_orig_values=[1, 2, 3], label_target_values=[3, 1, 2]."
    ) in message


def test_mscmrseg_values_are_recognised(tmp_path):
    files = _cardiac_volumes(tmp_path, 2, {"lv": 500, "myo": 200, "rv": 600})
    assert known_label_releases([0, 200, 500, 600]) == [
        ("the MS-CMRSeg 2019 release (500 LV, 200 myocardium, 600 RV)", ("mscmrseg",))
    ]
    summary = check_label_map(files, MSCMRSEG_LABEL_MAP, "cardiac")
    assert summary["map"] == {"0": 0, "200": 2, "500": 1, "600": 3} and "MS-CMRSeg" in summary["release"][0]
    with pytest.raises(LabelMapError, match="(?s)those of the MS-CMRSeg 2019 release.*The map 'mscmrseg'"):
        check_label_map(files, "index", "cardiac")


def test_masks_that_no_map_explains_are_said_to_be(tmp_path):
    # A lossy (JPEG-like) mask: many values, no map or permutation fits.
    path = str(tmp_path / "noisy.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)).save(path)
    with pytest.raises(LabelMapError, match="No known map and no permutation of the classes passes"):
        check_label_map([path], "index", "fundus")


def test_a_cup_touching_the_disc_edge_passes_but_an_open_one_fails(tmp_path):
    paths = []
    for i, cup_shift in enumerate((0, 0, 0, 9)):  # the last cup pokes out of the disc on one side
        mask = np.zeros((SIZE, SIZE), np.uint8)
        yy, xx = np.mgrid[:SIZE, :SIZE]
        mask[np.hypot(yy - 32, xx - 32) < 12] = 1
        mask[np.hypot(yy - 32, xx - 32 - cup_shift) < 5] = 2
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(mask).save(paths[-1])
    summary = check_label_map(paths, "index", "fundus")
    assert 0.0 < summary["nesting"]["optic cup in optic disc rim"]["open_fraction"] < 0.2
    with pytest.raises(LabelMapError, match="open in 1 of the 4 slices"):
        check_label_map(paths, "index", "fundus", max_open_border=0.05)


def test_a_class_missing_from_the_sample_leaves_its_nesting_untested(tmp_path):
    files = _fundus_masks(tmp_path, 2, background=0, rim=1, cup=1)  # disc only
    assert check_label_map(files, "index", "fundus")["nesting"]["optic cup in optic disc rim"]["slices"] == 0


def test_the_sample_is_deterministic_and_spans_the_list():
    files = [f"/data/m{i:03d}.png" for i in range(50)]
    sample = sample_label_files(files[::-1], max_files=20)
    assert len(sample) == 20 and sample[0] == files[0] and sample[-1] == files[-1]
    assert sample == sample_label_files(files + files[:5], max_files=20)
    assert sample_label_files(files[:3]) == files[:3]
    assert len(sample_label_files(files, max_files=None)) == 50


def test_unknown_task_and_map_name_are_refused(tmp_path):
    files = _fundus_masks(tmp_path, 1, background=0, rim=1, cup=2)
    with pytest.raises(KeyError, match="task"):
        check_label_map(files, "index", "prostate")
    with pytest.raises(KeyError, match="Unknown label map 'riga'"):
        check_label_map(files, "riga", "fundus")
    with pytest.raises(ValueError, match="No label files"):
        check_label_map([], "index", "fundus")


def test_domain_preparation_checks_the_map_it_is_given(tmp_path):
    root = tmp_path / "RIGA"
    for domain in ("BinRushed", "Magrabia"):
        masks = _fundus_masks(root / domain / "masks", 3, background=0, rim=255, cup=128)
        os.makedirs(root / domain / "images")
        for mask in masks:
            Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(mask.replace("masks", "images"))
    assert sorted(prepare_fundus_domains(str(root), str(tmp_path / "work"), label_map="ccsdg")) == [
        "BinRushed",
        "Magrabia",
    ]
    assert prepare_fundus_domains(str(root), str(tmp_path / "work"))  # no map given: no check
    with pytest.raises(LabelMapError, match="of domain 'BinRushed'.*\n(?s:.*)map 'ccsdg'"):
        prepare_fundus_domains(str(root), str(tmp_path / "work"), label_map="refuge")


def test_cardiac_preparation_stops_before_slicing_a_contradicted_release(tmp_path):
    root = tmp_path / "cardiac"
    for domain in ("bSSFP", "LGE"):
        labels = _cardiac_volumes(root / domain / "labels", 2, SLAUG)
        for label in labels:
            image = np.zeros(nib.load(label).shape, np.float32)
            path = label.replace("labels", "images").replace("_manual", "")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            nib.save(nib.Nifti1Image(image, np.eye(4)), path)
    with pytest.raises(LabelMapError, match="map 'slaug'"):
        prepare_cardiac_domains(str(root), str(tmp_path / "slices"), label_map="index")
    assert not (tmp_path / "slices").exists()
    domains = prepare_cardiac_domains(str(root), str(tmp_path / "slices"), label_map="slaug")
    # Reused slices are checked from their datalist.
    assert check_domain_labels(domains, "slaug", "cardiac")["LGE"]["nesting"]["left ventricle in myocardium"]["slices"]
    with pytest.raises(LabelMapError, match="domain 'LGE'.*\\nFiles checked \\(8, under .*slices"):
        prepare_cardiac_domains(str(root), str(tmp_path / "slices"), label_map="index")


@pytest.mark.parametrize("task", ["fundus", "cardiac"])
def test_demo_domains_pass_with_the_index_map(tmp_path, task):
    domains = make_demo_data(task, str(tmp_path / task), n_per_domain=3, image_size=64)
    for domain, summary in check_domain_labels(domains, "index", task).items():
        nesting = next(iter(summary["nesting"].values()))
        assert nesting["slices"] > 0 and nesting["open_fraction"] <= 0.05, (domain, summary)


def test_demo_generators_pass_with_the_index_map(tmp_path):
    make_fundus_dataset(tmp_path / "fundus", n_per_domain=3, image_size=64)
    fundus = sorted(str(p) for p in (tmp_path / "fundus").rglob("*") if p.suffix == ".png" and "mask" in p.parent.name)
    assert fundus and check_label_map(fundus, "index", "fundus")["class_counts"]["optic cup"] > 0
    make_cardiac_dataset(tmp_path / "cardiac", n_per_domain=2, image_size=64, slices=4)
    volumes = sorted(str(p) for p in (tmp_path / "cardiac").rglob("labels/*.nii.gz"))
    summary = check_label_map(volumes, "index", "cardiac")
    assert summary["nesting"]["left ventricle in myocardium"]["slices"] > 0


def test_label_map_from_values_pairs_the_bundle_lists():
    assert label_map_from_values([255, 128], ["1", 2]) == {255: 1, 128: 2}
    assert label_map_from_values([], []) == {}
    with pytest.raises(ValueError, match=r"\[255, 128\] and label_target_values \[1\] differ in length"):
        label_map_from_values([255, 128], [1])

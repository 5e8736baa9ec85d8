"""Synthetic multi-sequence cardiac MRI: NIfTI geometry, label values and anatomy, sequence contrasts, determinism."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import LoadImaged, MapLabelValued
from monai_ext.demo import CARDIAC_DOMAINS, MSCMRSEG_LABEL_MAP, make_cardiac_dataset
from scipy import ndimage

SIZE, SLICES, N = 64, 3, 3
SPACING = (1.5, 1.5, 10.0)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("cardiac") / "data")
    summary = make_cardiac_dataset(out, n_per_domain=N, image_size=SIZE, slices=SLICES, seed=2, spacing=SPACING)
    return out, summary


def _volumes(out, domain):
    with open(os.path.join(out, domain, "datalist.json")) as f:
        datalist = json.load(f)
    assert (len(datalist["training"]), len(datalist["test"])) == (2, 1)
    for item in datalist["training"] + datalist["test"]:
        assert item["domain"] == domain
        yield (nib.load(os.path.join(out, domain, item["image"])), nib.load(os.path.join(out, domain, item["label"])))


def test_nifti_geometry_and_label_values(dataset):
    out, summary = dataset
    assert sorted(summary["counts"]) == ["bssfp", "lge", "t2"]
    for domain in CARDIAC_DOMAINS:
        for image, label in _volumes(out, domain):
            assert image.shape == label.shape == (SIZE, SIZE, SLICES)
            assert image.get_data_dtype() == np.int16 and label.get_data_dtype() == np.uint8
            np.testing.assert_allclose(np.diag(image.affine)[:3], SPACING)
            np.testing.assert_allclose(image.affine, label.affine)
            np.testing.assert_allclose(image.header.get_zooms(), SPACING)
            labels = np.asarray(label.dataobj)
            assert set(np.unique(labels[..., 0])) == {0, 1, 2, 3}  # basal slice has every structure
            assert set(np.unique(labels)) <= {0, 1, 2, 3}


def test_anatomy_lv_inside_myocardium_and_shrinking_to_apex(dataset):
    out, _ = dataset
    for _, label in _volumes(out, "bssfp"):
        labels = np.asarray(label.dataobj)
        for k in range(SLICES):
            lv = labels[..., k] == 1
            ring = ndimage.binary_dilation(lv) & ~lv
            assert lv.any() and (labels[..., k][ring] == 2).all()  # the LV cavity touches only myocardium
        lv_area = (labels == 1).sum(axis=(0, 1))
        rv_area = (labels == 3).sum(axis=(0, 1))
        assert all(np.diff(lv_area) < 0) and rv_area[-1] < rv_area[0]


def test_sequences_have_their_own_contrast(dataset):
    out, _ = dataset
    means = {}
    for domain in CARDIAC_DOMAINS:
        blood, myo = [], []
        for image, label in _volumes(out, domain):
            data, labels = np.asarray(image.dataobj, float), np.asarray(label.dataobj)
            blood.append(data[labels == 1].mean())
            myo.append(np.percentile(data[labels == 2], [50, 99]))
        means[domain] = (np.mean(blood), np.mean(myo, axis=0))
    assert means["bssfp"][0] > 2 * means["bssfp"][1][0]  # bright blood, dark myocardium
    assert means["t2"][0] < means["t2"][1][0]  # black blood
    assert means["lge"][1][1] > 3 * means["lge"][1][0]  # bright scar within nulled myocardium
    assert means["lge"][1][1] > means["lge"][0]


def test_monai_loads_volumes_and_maps_mscmrseg_labels(dataset):
    out, _ = dataset
    item = {
        "image": os.path.join(out, "lge", "images", "subject_000.nii.gz"),
        "label": os.path.join(out, "lge", "labels", "subject_000.nii.gz"),
    }
    loaded = LoadImaged(keys=["image", "label"], image_only=True)(item)
    assert tuple(loaded["image"].shape) == (SIZE, SIZE, SLICES)
    np.testing.assert_allclose(loaded["label"].affine.numpy()[:3, :3], np.diag(SPACING))
    # A label volume in MS-CMRSeg values maps back onto this convention with MONAI's MapLabelValued.
    ours = np.asarray(loaded["label"])
    mscmrseg = np.zeros_like(ours, dtype=np.int16)
    for original, value in MSCMRSEG_LABEL_MAP.items():
        mscmrseg[ours == value] = original
    to_ours = MapLabelValued(
        keys="label", orig_labels=list(MSCMRSEG_LABEL_MAP), target_labels=list(MSCMRSEG_LABEL_MAP.values())
    )
    mapped = to_ours({"label": mscmrseg})["label"]
    np.testing.assert_array_equal(mapped, ours)


def test_same_seed_same_bytes(tmp_path, dataset):
    out, _ = dataset
    make_cardiac_dataset(
        tmp_path / "t2", n_per_domain=1, image_size=SIZE, slices=SLICES, seed=2, spacing=SPACING, domains="t2"
    )
    make_cardiac_dataset(
        tmp_path / "seed", n_per_domain=1, image_size=SIZE, slices=SLICES, seed=3, spacing=SPACING, domains="t2"
    )
    for folder in ("images", "labels"):
        name = f"t2/{folder}/subject_000.nii.gz"
        assert _read(tmp_path / "t2" / name) == _read(os.path.join(out, name))
    name = "t2/images/subject_000.nii.gz"
    assert _read(tmp_path / "seed" / name) != _read(os.path.join(out, name))


@pytest.mark.parametrize(
    "kwargs, message",
    [({"domains": ["flair"]}, "flair"), ({"slices": 0}, "slices"), ({"spacing": (1.0, 1.0)}, "spacing")],
)
def test_bad_arguments_are_clear_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_cardiac_dataset(tmp_path / "out", **{"n_per_domain": 1, "image_size": 32, **kwargs})
    assert not os.path.exists(tmp_path / "out")

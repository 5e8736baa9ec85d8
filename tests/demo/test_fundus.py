"""Synthetic multi-domain fundus images: label values, cup inside disc, real domain differences, determinism."""

import json
import os
from dataclasses import replace

import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from monai_ext.demo import FUNDUS_DOMAINS, make_fundus_dataset, render_fundus, sample_rng
from PIL import Image
from scipy import ndimage

SIZE = 128
N = 4


def _read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("fundus") / "data")
    summary = make_fundus_dataset(out, n_per_domain=N, image_size=SIZE, seed=4, test_fraction=0.25)
    return out, summary


def _pairs(out, domain):
    """(image, label) arrays of every sample of a domain, from its datalist as MONAI resolves it."""
    path = os.path.join(out, domain, "datalist.json")
    items = [item for key in ("training", "test") for item in load_decathlon_datalist(path, data_list_key=key)]
    assert all(item["domain"] == domain for item in items)
    return [(np.asarray(Image.open(item["image"])), np.asarray(Image.open(item["label"]))) for item in items]


def test_layout_datalists_and_domain_description(dataset):
    out, summary = dataset
    assert sorted(summary["counts"]) == sorted(FUNDUS_DOMAINS) == ["domain_a", "domain_b", "domain_c", "domain_d"]
    with open(os.path.join(out, "domains.json")) as f:
        described = json.load(f)
    assert set(described["domains"]) == set(FUNDUS_DOMAINS)
    assert described["labels"] == {"background": 0, "disc_rim": 1, "cup": 2}
    for domain in FUNDUS_DOMAINS:
        assert described["domains"][domain]["description"] == FUNDUS_DOMAINS[domain].description
        with open(os.path.join(out, domain, "datalist.json")) as f:
            datalist = json.load(f)
        assert (len(datalist["training"]), len(datalist["test"])) == (3, 1)
        assert datalist["training"][0] == {
            "image": f"images/{domain}_0000.png",
            "label": f"masks/{domain}_0000.png",
            "domain": domain,
        }


def test_labels_are_disc_rim_and_cup_with_cup_inside_disc(dataset):
    out, _ = dataset
    for domain in FUNDUS_DOMAINS:
        for image, label in _pairs(out, domain):
            assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
            assert label.shape == (SIZE, SIZE) and set(np.unique(label)) == {0, 1, 2}
            cup, disc = label == 2, label >= 1
            # a rim separates the cup from the background everywhere, and the disc is one blob without holes
            assert not (ndimage.binary_dilation(cup) & (label == 0)).any()
            assert ndimage.label(disc)[1] == 1 and (ndimage.binary_fill_holes(disc) == disc).all()
            rows_cup, rows_disc = np.flatnonzero(cup.any(1)), np.flatnonzero(disc.any(1))
            vertical_cdr = len(rows_cup) / len(rows_disc)
            assert 0.2 < vertical_cdr < 0.8
            # the disc is the brightest structure of the image
            brightness = image.astype(float).mean(-1)
            assert brightness[disc].mean() > brightness[~disc & (brightness > 10)].mean() + 30


def test_domains_differ_in_colour(dataset):
    out, _ = dataset
    colours = {}
    for domain in FUNDUS_DOMAINS:
        images = np.stack([image for image, _ in _pairs(out, domain)]).astype(float)
        fov = images.mean(-1) > 10
        colours[domain] = np.stack([images[..., c][fov].mean() for c in range(3)])
    names = list(colours)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert np.abs(colours[a] - colours[b]).max() > 5, (a, b)
    red_to_blue = {d: colours[d][0] / colours[d][2] for d in names}
    assert red_to_blue["domain_b"] > red_to_blue["domain_a"] > red_to_blue["domain_c"]  # warm vs cool white balance


def _detail(image):
    """Mean absolute difference between horizontal neighbours: fine structure and noise."""
    return np.abs(np.diff(image.astype(float), axis=1)).mean()


def test_resolution_and_noise_settings_change_the_image():
    reference = replace(FUNDUS_DOMAINS["domain_a"], noise=0.0)
    sharp, label, _ = render_fundus(sample_rng(0, 7), SIZE, reference)
    coarse, coarse_label, _ = render_fundus(sample_rng(0, 7), SIZE, replace(reference, render_scale=1 / 3))
    noisy, _, _ = render_fundus(sample_rng(0, 7), SIZE, replace(reference, noise=0.05))
    np.testing.assert_array_equal(label, coarse_label)  # labels are always drawn at full resolution
    assert _detail(coarse) < 0.8 * _detail(sharp) < _detail(noisy)


def test_same_seed_same_bytes_and_domains_independent(tmp_path, dataset):
    out, _ = dataset
    make_fundus_dataset(
        tmp_path / "b_only", n_per_domain=N, image_size=SIZE, seed=4, domains=["domain_b"], test_fraction=0.25
    )
    make_fundus_dataset(tmp_path / "other_seed", n_per_domain=1, image_size=SIZE, seed=5, domains=["domain_b"])
    for i in range(N):
        for folder in ("images", "masks"):
            name = f"domain_b/{folder}/domain_b_{i:04d}.png"
            assert _read(tmp_path / "b_only" / name) == _read(os.path.join(out, name))
    datalist = os.path.join("domain_b", "datalist.json")
    assert _read(tmp_path / "b_only" / datalist) == _read(os.path.join(out, datalist))
    assert not os.path.exists(tmp_path / "b_only" / "domain_a")
    other = "domain_b/images/domain_b_0000.png"
    assert _read(tmp_path / "other_seed" / other) != _read(os.path.join(out, other))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"domains": ["domain_x"]}, "domain_x"),
        ({"n_per_domain": 0}, "n_per_domain"),
        ({"image_size": 8}, "image_size"),
        ({"test_fraction": 1.0}, "test_fraction"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_fundus_dataset(tmp_path / "out", **{"n_per_domain": 2, "image_size": 32, **kwargs})
    assert not os.path.exists(tmp_path / "out")

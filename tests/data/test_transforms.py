"""Mask binarisation, label value checks and random intensity curves, global and per labelled structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from monai_ext.data import (
    BinarizeMask,
    BinarizeMaskd,
    LabelValueError,
    RandClassIntensityCurve,
    RandClassIntensityCurved,
    RandIntensityCurve,
    RandIntensityCurved,
    ValidateLabelValues,
    ValidateLabelValuesd,
)


@pytest.mark.parametrize("foreground", [1, 255])
def test_binarize_0_1_and_0_255(foreground):
    mask = MetaTensor(
        torch.tensor([[0, foreground], [foreground, 0]], dtype=torch.uint8), meta={"filename_or_obj": "m.png"}
    )
    out = BinarizeMaskd(keys="label")({"label": mask})["label"]
    assert out.dtype == torch.float32
    assert torch.equal(out.as_tensor(), torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert out.meta["filename_or_obj"] == "m.png"
    as_numpy = BinarizeMask()(np.array([0, foreground, 0], dtype=np.uint8))
    assert isinstance(as_numpy, np.ndarray) and as_numpy.dtype == np.float32
    assert as_numpy.tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("values", [[0, 128, 255], [0, 1, 255], [0, 0.5, 1], [0, 254, 255]])
def test_binarize_rejects_other_values_naming_file(values):
    mask = MetaTensor(torch.tensor(values, dtype=torch.float32), meta={"filename_or_obj": "/data/mask_7.jpg"})
    with pytest.raises(LabelValueError) as info:
        BinarizeMask()(mask)
    message = str(info.value)
    assert "/data/mask_7.jpg" in message and "not binary" in message
    offending = [v for v in values if v not in (0, 255)] if 255 in values else [v for v in values if v not in (0, 1)]
    assert all(f"{v:g}" in message for v in offending)


def test_validate_label_values():
    label = MetaTensor(torch.tensor([[0, 1], [2, 0]]), meta={"filename_or_obj": "cup.png"})
    assert ValidateLabelValuesd(keys="label", allowed=(0, 1, 2))({"label": label})["label"] is label
    with pytest.raises(LabelValueError, match=r"cup.png.*\[2\].*allowed \[0.0, 1.0\]"):
        ValidateLabelValues(allowed=(0, 1))(label)
    with pytest.raises(ValueError):
        ValidateLabelValues(allowed=())


def _ramp(n: int = 201) -> np.ndarray:
    return np.linspace(0.0, 1.0, n, dtype=np.float32)[None]  # one channel, increasing along the last axis


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("channel_wise", [False, True])
def test_intensity_curve_stays_in_unit_range(seed, channel_wise):
    image = np.random.default_rng(seed).uniform(-0.5, 1.5, size=(3, 16, 16)).astype(np.float32)  # clipped first
    out = RandIntensityCurve(prob=1.0, channel_wise=channel_wise).set_random_state(seed=seed)(image)
    assert out.shape == image.shape and out.min() >= 0.0 and out.max() <= 1.0


def test_intensity_curve_prob_0_is_identity():
    image = MetaTensor(torch.rand(1, 8, 8), meta={"filename_or_obj": "a.nii"})
    assert RandIntensityCurve(prob=0.0, invert_prob=1.0)(image) is image
    data = {"image": image, "label": torch.zeros(1, 8, 8)}
    out = RandIntensityCurved(keys=["image", "label"], prob=0.0, invert_prob=1.0)(data)
    assert out["image"] is image and out["label"] is data["label"]


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("invert_prob, sign", [(1.0, -1), (0.0, 1)])
def test_intensity_curve_is_monotone_decreasing_when_inverted(seed, invert_prob, sign):
    out = RandIntensityCurve(prob=1.0, invert_prob=invert_prob).set_random_state(seed=seed)(_ramp())
    steps = sign * np.diff(out[0].astype(np.float64))
    assert steps.min() >= -1e-6, "the curve must be monotone (non-decreasing, or non-increasing when inverted)"
    ends = (out[0, 0], out[0, -1])
    assert np.allclose(ends, (1.0, 0.0) if sign < 0 else (0.0, 1.0), atol=1e-5)  # (0, 0) -> (1, 1), or inverted


def test_intensity_curve_same_seed_same_output_different_seed_differs():
    image = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(0))

    def run(seed):
        curve = RandIntensityCurve(prob=1.0, channel_wise=True).set_random_state(seed=seed)
        return torch.stack([curve(image) for _ in range(3)])  # three successive draws

    assert torch.equal(run(3), run(3))
    assert not torch.allclose(run(3), run(4))


def test_intensity_curve_reproducible_under_compose_reseeding():
    """Reseeding the pipeline (``Compose.set_random_state``, as EpochSeeder does every epoch) replays the curves."""
    pipeline = Compose([RandIntensityCurved(keys="image", prob=0.5)])
    images = [{"image": torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(i))} for i in range(6)]

    def epoch(seed):
        pipeline.set_random_state(seed=seed)
        return torch.stack([pipeline(item)["image"] for item in images])

    assert torch.equal(epoch(11), epoch(11))
    assert not torch.equal(epoch(11), epoch(12))


def test_intensity_curve_dict_applies_one_curve_to_all_keys_and_leaves_others():
    ramp = torch.as_tensor(_ramp())
    data = {"image": ramp.clone(), "image2": ramp.clone(), "label": (ramp > 0.5).float()}
    for seed in range(5):
        out = RandIntensityCurved(keys=["image", "image2"], prob=1.0).set_random_state(seed=seed)(data)
        assert torch.equal(out["image"], out["image2"])
        assert not torch.equal(out["image"], ramp)
        assert out["label"] is data["label"]
    image = torch.rand(3, 8, 8)
    per_channel = RandIntensityCurved(keys=["image", "image2"], prob=1.0, channel_wise=True).set_random_state(seed=0)
    out = per_channel({"image": image, "image2": image.clone()})
    assert torch.equal(out["image"], out["image2"])
    with pytest.raises(ValueError, match="channels"):
        per_channel({"image": image, "image2": image[:1]})


def test_intensity_curve_applies_one_curve_to_all_channels_unless_channel_wise():
    image = np.repeat(_ramp(), 3, axis=0)
    same = RandIntensityCurve(prob=1.0).set_random_state(seed=0)(image)
    assert np.array_equal(same[0], same[1]) and np.array_equal(same[0], same[2])
    per_channel = RandIntensityCurve(prob=1.0, channel_wise=True).set_random_state(seed=0)(image)
    assert not (np.array_equal(per_channel[0], per_channel[1]) and np.array_equal(per_channel[0], per_channel[2]))


def test_intensity_curve_keeps_type_dtype_and_meta():
    ramp = _ramp()
    curve = RandIntensityCurve(prob=1.0)
    as_numpy = curve(ramp.astype(np.float64))
    assert isinstance(as_numpy, np.ndarray) and as_numpy.dtype == np.float64
    as_tensor = curve(torch.as_tensor(ramp))
    assert type(as_tensor) is torch.Tensor and as_tensor.dtype == torch.float32
    as_half = curve(torch.as_tensor(ramp, dtype=torch.float16))
    assert as_half.dtype == torch.float16
    meta = curve(MetaTensor(torch.as_tensor(ramp), meta={"filename_or_obj": "bssfp_3.nii.gz"}))
    assert isinstance(meta, MetaTensor) and meta.meta["filename_or_obj"] == "bssfp_3.nii.gz"
    assert curve(np.zeros((1, 4), dtype=np.uint8)).dtype == np.float32  # integers cannot hold values in [0, 1]
    out = RandIntensityCurved(keys="image", prob=1.0)({"image": ramp})["image"]
    assert isinstance(out, np.ndarray) and out.dtype == np.float32


def test_intensity_curve_refuses_bad_arguments():
    with pytest.raises(ValueError, match="invert_prob"):
        RandIntensityCurve(invert_prob=1.5)
    with pytest.raises(ValueError, match="num_points"):
        RandIntensityCurve(num_points=1)


def _two_structures() -> tuple[np.ndarray, np.ndarray]:
    """A ramp image over two rows of labels: row 0 is class 0, row 1 class 2, both with the same intensities."""
    image = np.repeat(_ramp(), 2, axis=0)[None]  # (1, 2, 201)
    label = np.array([[0], [2]], dtype=np.float32) * np.ones((1, 2, 201), dtype=np.float32)
    return image, label


@pytest.mark.parametrize("seed", range(10))
def test_class_intensity_curve_is_one_monotone_curve_per_class(seed):
    image, label = _two_structures()
    out = RandClassIntensityCurve(prob=1.0).set_random_state(seed=seed)(image, label)
    assert out.shape == image.shape and out.min() >= 0.0 and out.max() <= 1.0
    for row in out[0]:
        steps = np.diff(row.astype(np.float64))
        assert steps.min() >= -1e-6 or steps.max() <= 1e-6, "each class's curve must be monotone"


def test_class_intensity_curves_differ_between_classes_and_can_reorder_tissues():
    """Two structures of the same intensities come out different, and a bright structure can come out darker than a
    dimmer one (bSSFP blood 0.9 above fat 0.75; T2 blood below fat), which no single monotone curve does."""
    image, label = _two_structures()
    outputs = [RandClassIntensityCurve(prob=1.0).set_random_state(seed=s)(image, label) for s in range(10)]
    assert any(not np.allclose(out[0, 0], out[0, 1]) for out in outputs)
    flat = np.array([[[0.9, 0.9, 0.75, 0.75]]], dtype=np.float32)  # blood, blood, fat, fat
    tissues = np.array([[[1, 1, 0, 0]]], dtype=np.float32)
    reordered = [RandClassIntensityCurve(prob=1.0).set_random_state(seed=s)(flat, tissues) for s in range(20)]
    assert any(out[0, 0, 0] < out[0, 0, 2] for out in reordered)
    assert any(out[0, 0, 0] > out[0, 0, 2] for out in reordered)
    global_curves = [RandIntensityCurve(prob=1.0, invert_prob=0.0).set_random_state(seed=s)(flat) for s in range(20)]
    assert all(out[0, 0, 0] >= out[0, 0, 2] for out in global_curves)


def test_class_intensity_curve_reproducible_under_compose_reseeding_and_keys_share_curves():
    pipeline = Compose([RandClassIntensityCurved(keys=["image", "image2"], label_key="label", prob=0.5)])
    rng = np.random.default_rng(0)
    items = []
    for _ in range(6):
        image = torch.as_tensor(rng.uniform(size=(1, 8, 8)), dtype=torch.float32)
        items.append({"image": image, "image2": image.clone(), "label": torch.as_tensor(rng.integers(0, 4, (1, 8, 8)))})

    def epoch(seed):
        pipeline.set_random_state(seed=seed)
        outs = [pipeline(item) for item in items]
        assert all(torch.equal(out["image"], out["image2"]) for out in outs)
        assert all(out["label"] is item["label"] for out, item in zip(outs, items))
        return torch.stack([out["image"] for out in outs])

    assert torch.equal(epoch(5), epoch(5))
    assert not torch.equal(epoch(5), epoch(6))


def test_class_intensity_curve_keeps_type_dtype_and_meta_and_prob_0_is_identity():
    image, label = _two_structures()
    curves = RandClassIntensityCurve(prob=1.0)
    assert curves(image.astype(np.float64), label).dtype == np.float64
    meta = curves(MetaTensor(torch.as_tensor(image), meta={"filename_or_obj": "bssfp_3.nii.gz"}), label)
    assert isinstance(meta, MetaTensor) and meta.meta["filename_or_obj"] == "bssfp_3.nii.gz"
    half = curves(torch.as_tensor(image, dtype=torch.float16), torch.as_tensor(label[0]))  # label without channel
    assert half.dtype == torch.float16
    assert RandClassIntensityCurve(prob=0.0)(image, label) is image
    data = {"image": image, "label": label}
    assert RandClassIntensityCurved(prob=0.0)(data)["image"] is image


def test_class_intensity_curve_refuses_bad_labels():
    image, label = _two_structures()
    with pytest.raises(ValueError, match=r"spatial shape \(2, 201\).*got shape \(1, 2, 200\)"):
        RandClassIntensityCurve(prob=1.0)(image, label[..., :200])
    curves = RandClassIntensityCurve(prob=1.0)
    curves(image, label)
    with pytest.raises(ValueError, match=r"no curve for label values \[1.0, 3.0\]"):
        curves(image, label + 1.0, randomize=False)  # curves were drawn for 0 and 2
    with pytest.raises(KeyError, match="'seg'"):
        RandClassIntensityCurved(label_key="seg", prob=1.0)({"image": image, "label": label})

"""Mask binarisation and label value checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai_ext.data import BinarizeMask, BinarizeMaskd, LabelValueError, ValidateLabelValues, ValidateLabelValuesd


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

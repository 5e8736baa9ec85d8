"""PixelTextAlignmentLoss: hand-computed value, label formats, majority downsampling, ignore_index, errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from monai_ext.losses.alignment import PixelTextAlignmentLoss, downsample_label_majority


def test_value_matches_hand_computation():
    classes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # One pixel pointing at class 0, one halfway between both, labelled 0 and 1.
    pixels = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).T.reshape(1, 2, 1, 2)
    label = torch.tensor([[[[0, 1]]]])
    t = 0.5
    first = -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(0)))
    second = -math.log(0.5)  # equal cosines to both classes
    loss = PixelTextAlignmentLoss(temperature=t)(pixels, classes, label)
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-5)


def test_lower_when_pixels_equal_their_class_embedding():
    torch.manual_seed(0)
    classes = torch.randn(3, 16)
    label = torch.randint(0, 3, (2, 1, 8, 8))
    matching = classes[label[:, 0]].permute(0, 3, 1, 2)
    wrong = classes[(label[:, 0] + 1) % 3].permute(0, 3, 1, 2)
    loss = PixelTextAlignmentLoss()
    random = torch.randn(2, 16, 8, 8)
    assert loss(matching, classes, label) < 0.1 < loss(random, classes, label) < loss(wrong, classes, label)


def test_gradients_reach_pixels_and_classes():
    pixels = torch.randn(2, 8, 4, 4, requires_grad=True)
    classes = torch.randn(2, 3, 8, requires_grad=True)  # per-image class embeddings
    PixelTextAlignmentLoss()(pixels, classes, torch.randint(0, 3, (2, 1, 16, 16))).backward()
    assert pixels.grad.abs().sum() > 0 and classes.grad.abs().sum() > 0


def test_label_formats_agree():
    torch.manual_seed(1)
    pixels, classes = torch.randn(2, 8, 4, 4), torch.randn(3, 8)
    index = torch.randint(0, 3, (2, 1, 16, 16))
    one_hot = F.one_hot(index[:, 0], 3).permute(0, 3, 1, 2).float()
    loss = PixelTextAlignmentLoss()
    expected = loss(pixels, classes, index)
    for label in (index[:, 0], index.float(), one_hot):
        torch.testing.assert_close(loss(pixels, classes, label), expected)


def test_majority_downsampling_and_upsampling():
    label = torch.tensor([[[0, 0, 1, 1], [0, 1, 1, 1], [2, 2, 0, 0], [2, 0, 0, 2]]])
    torch.testing.assert_close(downsample_label_majority(label, (2, 2), 3), torch.tensor([[[0, 1], [2, 0]]]))
    up = downsample_label_majority(torch.tensor([[[0, 1], [2, 0]]]), (4, 4), 3)
    assert up.shape == (1, 4, 4) and (up[0, :2, 2:] == 1).all() and (up[0, 2:, :2] == 2).all()


def test_ignore_index_cells_are_left_out():
    label = torch.tensor([[[0, 255], [255, 255]]])
    target = downsample_label_majority(label, (1, 1), 2, ignore_index=255)
    assert target.item() == -100
    pixels = torch.randn(1, 4, 2, 2, requires_grad=True)
    classes = torch.randn(2, 4)
    loss = PixelTextAlignmentLoss(ignore_index=255)
    all_ignored = loss(pixels, classes, torch.full((1, 1, 2, 2), 255))
    assert all_ignored.item() == 0.0
    all_ignored.backward()
    mixed = torch.tensor([[[[1, 255], [255, 255]]]])
    only_first = loss(pixels[..., :1, :1], classes, mixed[..., :1, :1])
    torch.testing.assert_close(loss(pixels, classes, mixed), only_first)


def test_bad_inputs_are_named():
    loss = PixelTextAlignmentLoss()
    with pytest.raises(ValueError, match=r"Label values \[3\] are outside \[0, 2\]"):
        loss(torch.randn(1, 4, 2, 2), torch.randn(3, 4), torch.full((1, 1, 2, 2), 3))
    with pytest.raises(ValueError, match="class_embeddings must be"):
        loss(torch.randn(1, 4, 2, 2), torch.randn(3, 5), torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="non-integer"):
        loss(torch.randn(1, 4, 2, 2), torch.randn(3, 4), torch.full((1, 1, 2, 2), 0.5))
    with pytest.raises(ValueError, match="temperature"):
        PixelTextAlignmentLoss(temperature=0)

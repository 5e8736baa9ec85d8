"""PixelTextAlignmentLoss: hand-computed value, label formats, majority downsampling, ignore_index, errors, no host-device
synchronisation."""

import math

import pytest
import torch
import torch.nn.functional as F
from monai_ext.losses.alignment import PixelTextAlignmentLoss, downsample_label_majority
from torch.utils._python_dispatch import TorchDispatchMode


def cosines(pixels, classes):
    """Cosine map ``[B, K, h, w]`` of pixel embeddings ``[B, D, h, w]`` to class embeddings ``[K, D]``."""
    return torch.einsum("bdhw,kd->bkhw", F.normalize(pixels, dim=1), F.normalize(classes, dim=1))


def test_value_matches_hand_computation():
    # One pixel pointing at class 0, one halfway between both (cosines 1, 0 and 1/sqrt(2) twice), labelled 0 and 1.
    similarity = torch.tensor([[1.0, 0.5**0.5], [0.0, 0.5**0.5]]).reshape(1, 2, 1, 2)
    label = torch.tensor([[[[0, 1]]]])
    t = 0.5
    first = -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(0)))
    second = -math.log(0.5)  # equal cosines to both classes
    loss = PixelTextAlignmentLoss(temperature=t)(similarity, label)
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-5)


def test_lower_when_pixels_equal_their_class_embedding():
    torch.manual_seed(0)
    classes = torch.randn(3, 16)
    label = torch.randint(0, 3, (2, 1, 8, 8))
    matching = classes[label[:, 0]].permute(0, 3, 1, 2)
    wrong = classes[(label[:, 0] + 1) % 3].permute(0, 3, 1, 2)
    loss = PixelTextAlignmentLoss()
    random = torch.randn(2, 16, 8, 8)
    assert (
        loss(cosines(matching, classes), label)
        < 0.1
        < loss(cosines(random, classes), label)
        < loss(cosines(wrong, classes), label)
    )


def test_gradients_reach_the_similarity():
    similarity = torch.rand(2, 3, 4, 4, requires_grad=True)
    PixelTextAlignmentLoss()(similarity, torch.randint(0, 3, (2, 1, 16, 16))).backward()
    assert similarity.grad.abs().sum() > 0


def test_label_formats_agree():
    torch.manual_seed(1)
    similarity = torch.rand(2, 3, 4, 4) * 2 - 1
    index = torch.randint(0, 3, (2, 1, 16, 16))
    one_hot = F.one_hot(index[:, 0], 3).permute(0, 3, 1, 2).float()
    loss = PixelTextAlignmentLoss()
    expected = loss(similarity, index)
    for label in (index[:, 0], index.float(), one_hot):
        torch.testing.assert_close(loss(similarity, label), expected)


def test_majority_downsampling_and_upsampling():
    label = torch.tensor([[[0, 0, 1, 1], [0, 1, 1, 1], [2, 2, 0, 0], [2, 0, 0, 2]]])
    torch.testing.assert_close(downsample_label_majority(label, (2, 2), 3), torch.tensor([[[0, 1], [2, 0]]]))
    up = downsample_label_majority(torch.tensor([[[0, 1], [2, 0]]]), (4, 4), 3)
    assert up.shape == (1, 4, 4) and (up[0, :2, 2:] == 1).all() and (up[0, 2:, :2] == 2).all()


def test_the_label_is_brought_to_the_map_resolution():
    torch.manual_seed(2)
    similarity = torch.rand(2, 3, 8, 8) * 2 - 1
    label = torch.randint(0, 3, (2, 1, 8, 8))
    blocky = label.repeat_interleave(4, -1).repeat_interleave(4, -2)  # constant on 4x4 cells: unambiguous majority
    expected = F.cross_entropy(similarity / 0.07, label[:, 0])
    torch.testing.assert_close(PixelTextAlignmentLoss()(similarity, blocky), expected)


def test_ignore_index_cells_are_left_out():
    label = torch.tensor([[[0, 255], [255, 255]]])
    target = downsample_label_majority(label, (1, 1), 2, ignore_index=255)
    assert target.item() == -100
    similarity = torch.rand(1, 2, 2, 2, requires_grad=True)
    loss = PixelTextAlignmentLoss(ignore_index=255)
    all_ignored = loss(similarity, torch.full((1, 1, 2, 2), 255))
    assert all_ignored.item() == 0.0 and all_ignored.requires_grad
    all_ignored.backward()
    assert similarity.grad.abs().sum() == 0
    mixed = torch.tensor([[[[1, 255], [255, 255]]]])
    only_first = loss(similarity[..., :1, :1], mixed[..., :1, :1])
    torch.testing.assert_close(loss(similarity, mixed), only_first)


def test_bad_inputs_are_named():
    loss = PixelTextAlignmentLoss()
    with pytest.raises(ValueError, match=r"Label values \[3\] are outside \[0, 2\]"):
        loss(torch.rand(1, 3, 2, 2), torch.full((1, 1, 2, 2), 3))
    with pytest.raises(ValueError, match=r"Label values \[-1, 7\] are outside \[0, 1\].*ignore_index=255"):
        PixelTextAlignmentLoss(ignore_index=255)(torch.rand(1, 2, 2, 2), torch.tensor([[[[-1, 255], [7, 0]]]]))
    with pytest.raises(ValueError, match=r"similarity must be \[B, K, h, w\]"):
        loss(torch.rand(3, 2, 2), torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="Label batch size 2 differs"):
        loss(torch.rand(1, 3, 2, 2), torch.zeros(2, 1, 2, 2))
    with pytest.raises(ValueError, match=r"one-hot \[B, 3, H, W\]"):
        loss(torch.rand(1, 3, 2, 2), torch.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError, match="non-integer"):
        loss(torch.rand(1, 3, 2, 2), torch.full((1, 1, 2, 2), 0.5))
    with pytest.raises(ValueError, match="temperature"):
        PixelTextAlignmentLoss(temperature=0)


class HostReads(TorchDispatchMode):
    """Records the operations through which the host reads a tensor's value (each a wait on a GPU)."""

    READS = {"aten::_local_scalar_dense", "aten::equal", "aten::is_nonzero", "aten::nonzero", "aten::_unique2"}

    def __init__(self):
        super().__init__()
        self.reads = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in self.READS:
            self.reads.append(func._schema.name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("label_dtype", [torch.long, torch.float])
def test_no_value_is_read_on_the_host(label_dtype):
    similarity = (torch.rand(2, 3, 4, 4) * 2 - 1).requires_grad_()
    label = torch.randint(0, 3, (2, 1, 16, 16)).to(label_dtype)
    label[0, 0, :4] = 255
    with HostReads() as recorder:
        PixelTextAlignmentLoss(ignore_index=255)(similarity, label).backward()
    assert recorder.reads == []


def test_checks_on_a_device_are_asynchronous_assertions(monkeypatch):
    """Off the CPU the checks are queued, not read: a meta tensor stands in for the device (reading one fails)."""
    asserted = []
    monkeypatch.setattr(torch, "_assert_async", lambda condition, message: asserted.append(message))
    similarity = torch.empty(2, 3, 4, 4, device="meta", requires_grad=True)
    for dtype in (torch.long, torch.float):
        asserted.clear()
        value = PixelTextAlignmentLoss(ignore_index=255)(
            similarity, torch.empty(2, 1, 16, 16, device="meta", dtype=dtype)
        )
        assert value.shape == () and value.device.type == "meta"
        assert any("outside [0, 2]" in m for m in asserted)
    assert any("non-integer" in m for m in asserted)

import pytest
import torch
from monai.losses import DiceLoss
from monai_ext.losses import DiceBCELoss


def _batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 1, 8, 8, generator=generator)
    label = (torch.rand(2, 1, 8, 8, generator=generator) > 0.6).float()
    return logits, label


def test_sum_of_dice_and_bce_with_non_zero_bce():
    logits, label = _batch()
    loss_fn = DiceBCELoss(dice_weight=0.5, bce_weight=2.0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, label)
    dice = DiceLoss(sigmoid=True)(logits, label)
    assert bce > 0.1
    assert torch.allclose(loss_fn(logits, label), 0.5 * dice + 2.0 * bce)
    assert torch.allclose(DiceBCELoss(dice_weight=0.0)(logits, label), bce)


def test_gradients_flow_to_logits():
    logits, label = _batch(1)
    logits.requires_grad_(True)
    DiceBCELoss(dice_weight=0.0)(logits, label).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    # BCE gradient w.r.t. logits is (sigmoid(x) - y) / N: wrong side of 0.5 pushes the right way.
    assert torch.all((logits.grad > 0) == (torch.sigmoid(logits.detach()) > label))


def test_perfect_prediction_gives_near_zero_loss():
    _, label = _batch(2)
    logits = (label * 2 - 1) * 30.0
    assert DiceBCELoss()(logits, label).item() < 1e-4
    assert DiceBCELoss(batch=True)(logits, label).item() < 1e-4


def test_pos_weight_scales_only_positive_pixels():
    logits, label = _batch(3)
    loss = DiceBCELoss(dice_weight=0.0, pos_weight=3.0)(logits, label)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, label, pos_weight=torch.tensor([3.0]))
    assert torch.allclose(loss, expected)
    assert loss > DiceBCELoss(dice_weight=0.0)(logits, label)


def test_bad_inputs_are_explained():
    logits, label = _batch()
    with pytest.raises(ValueError, match="single-channel"):
        DiceBCELoss()(torch.randn(2, 3, 8, 8), label)
    with pytest.raises(ValueError, match="label shape"):
        DiceBCELoss()(logits, label[:, :, :4])
    with pytest.raises(ValueError, match=">= 0"):
        DiceBCELoss(bce_weight=-1)
    with pytest.raises(ValueError, match="one value"):
        DiceBCELoss(pos_weight=[1.0, 2.0])

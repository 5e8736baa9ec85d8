"""AuxiliaryOutputLoss (segmentation loss + weighted auxiliary loss on a network's output dict) and
SimilarityMapLoss (TGC-Net's alignment term), alone and as the bundles' train.json builds them."""

import os

import pytest
import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser
from monai.losses import DiceCELoss
from monai_ext.losses import AuxiliaryOutputLoss, DiceBCELoss, PixelTextAlignmentLoss, SimilarityMapLoss

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def binary_outputs(seed=0, batch=2, size=32, grid=4):
    generator = torch.Generator().manual_seed(seed)
    outputs = {
        "pred": torch.randn(batch, 1, size, size, generator=generator),
        "similarity": torch.randn(batch, 1, grid, grid, generator=generator),
    }
    label = (torch.rand(batch, 1, size, size, generator=generator) > 0.6).float()
    return outputs, label


def old_tgcnet_alignment_loss(similarity, label):
    """The term as ``TGCNet.alignment_loss`` computed it from the stored similarity logits."""
    target = F.adaptive_avg_pool2d(label.float(), similarity.shape[-2:])
    return F.binary_cross_entropy_with_logits(similarity.float(), target)


def test_similarity_map_loss_is_the_old_tgcnet_term():
    outputs, label = binary_outputs()
    value = SimilarityMapLoss()(outputs["similarity"], label)
    torch.testing.assert_close(value, old_tgcnet_alignment_loss(outputs["similarity"], label), rtol=0, atol=0)
    # By hand: the target of each cell is the foreground fraction of its 8x8 pixels.
    target = label.reshape(2, 1, 4, 8, 4, 8).mean(dim=(3, 5))
    p = torch.sigmoid(outputs["similarity"])
    by_hand = -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
    torch.testing.assert_close(value, by_hand)


def test_similarity_map_loss_refuses_mismatched_batches():
    with pytest.raises(ValueError, match="agree in batch and channels"):
        SimilarityMapLoss()(torch.randn(2, 1, 4, 4), torch.zeros(3, 1, 32, 32))


def test_segmentation_loss_plus_weighted_auxiliary_loss():
    outputs, label = binary_outputs()
    seg, aux = DiceBCELoss(), SimilarityMapLoss()
    loss_fn = AuxiliaryOutputLoss(seg, aux, weight=0.3, aux_keys=["similarity"])
    expected = seg(outputs["pred"], label) + 0.3 * aux(outputs["similarity"], label)
    torch.testing.assert_close(loss_fn(outputs, label), expected, rtol=0, atol=0)
    # A tensor (eval-mode output, or a network without auxiliary outputs) gets the segmentation term only.
    torch.testing.assert_close(loss_fn(outputs["pred"], label), seg(outputs["pred"], label), rtol=0, atol=0)


class FirstMinusTwiceSecond(torch.nn.Module):
    """An auxiliary loss of two entries whose value depends on their order."""

    def forward(self, first, second, label):
        return (first.mean() - 2 * second.mean()) * label.float().mean()


def test_auxiliary_entries_are_passed_in_order_before_the_label():
    first, second = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 8)
    label = torch.randint(0, 3, (2, 1, 16, 16))
    outputs = {"logits": torch.randn(2, 3, 16, 16), "second": second, "first": first}
    seg, aux = DiceCELoss(to_onehot_y=True, softmax=True), FirstMinusTwiceSecond()
    loss_fn = AuxiliaryOutputLoss(seg, aux, weight=0.1, aux_keys=("first", "second"), pred_key="logits")
    expected = seg(outputs["logits"], label) + 0.1 * aux(first, second, label)
    torch.testing.assert_close(loss_fn(outputs, label), expected, rtol=0, atol=0)


class Refuses(torch.nn.Module):
    def forward(self, *args):
        raise AssertionError("the auxiliary loss must not be called")


@pytest.mark.parametrize("aux_loss, weight", [(Refuses(), 0.0), (None, 0.1)])
def test_auxiliary_term_off(aux_loss, weight):
    outputs, label = binary_outputs()
    loss_fn = AuxiliaryOutputLoss(DiceBCELoss(), aux_loss, weight=weight, aux_keys="similarity")
    expected = DiceBCELoss()(outputs["pred"], label)
    torch.testing.assert_close(loss_fn(outputs, label), expected, rtol=0, atol=0)
    # Off, the entries it would take need not be there (e.g. TGC-Net built with use_vlcm=False).
    torch.testing.assert_close(loss_fn({"pred": outputs["pred"]}, label), expected, rtol=0, atol=0)


def test_missing_entries_and_missing_keys_are_refused():
    outputs, label = binary_outputs()
    loss_fn = AuxiliaryOutputLoss(DiceBCELoss(), SimilarityMapLoss(), weight=0.1, aux_keys="similarity")
    with pytest.raises(KeyError, match=r"\['similarity'\].*\['pred'\].*weight=0"):
        loss_fn({"pred": outputs["pred"]}, label)
    with pytest.raises(KeyError, match=r"\['pred'\]"):
        loss_fn({"similarity": outputs["similarity"]}, label)
    with pytest.raises(ValueError, match="aux_keys"):
        AuxiliaryOutputLoss(DiceBCELoss(), SimilarityMapLoss())


def test_gradient_is_the_segmentation_gradient_plus_the_weighted_auxiliary_gradient():
    outputs, label = binary_outputs()
    leaves = {k: v.clone().requires_grad_(True) for k, v in outputs.items()}
    AuxiliaryOutputLoss(DiceBCELoss(), SimilarityMapLoss(), weight=0.25, aux_keys="similarity")(
        leaves, label
    ).backward()
    pred = outputs["pred"].clone().requires_grad_(True)
    DiceBCELoss()(pred, label).backward()
    similarity = outputs["similarity"].clone().requires_grad_(True)
    SimilarityMapLoss()(similarity, label).backward()
    torch.testing.assert_close(leaves["pred"].grad, pred.grad)
    torch.testing.assert_close(leaves["similarity"].grad, 0.25 * similarity.grad)
    assert similarity.grad.abs().sum() > 0


def bundle_loss(bundle):
    parser = ConfigParser()
    parser.read_config(os.path.join(REPO, "bundles", bundle, "configs", "train.json"))
    return parser, parser.get_parsed_content("loss")


def test_tgcnet_bundle_loss_is_dice_bce_plus_the_alignment_term():
    parser, loss_fn = bundle_loss("tgcnet")
    outputs, label = binary_outputs(size=64)
    weight = parser.get_parsed_content("alignment_weight")
    expected = DiceBCELoss()(outputs["pred"], label) + weight * old_tgcnet_alignment_loss(outputs["similarity"], label)
    assert weight == 0.1
    torch.testing.assert_close(loss_fn(outputs, label), expected, rtol=0, atol=0)


@pytest.mark.parametrize("use_dice_loss, use_ce_loss", [(True, True), (False, True), (True, False)])
def test_vlsanet_bundle_loss_is_dice_ce_plus_the_alignment_term(use_dice_loss, use_ce_loss):
    parser = ConfigParser()
    parser.read_config(os.path.join(REPO, "bundles", "vlsanet", "configs", "train.json"))
    parser.update({"use_dice_loss": use_dice_loss, "use_ce_loss": use_ce_loss})
    loss_fn = parser.get_parsed_content("loss")
    generator = torch.Generator().manual_seed(1)
    outputs = {
        "pred": torch.randn(2, 3, 32, 32, generator=generator),
        "pixel_text_similarity": torch.rand(2, 3, 16, 16, generator=generator) * 2 - 1,
    }
    label = torch.randint(0, 3, (2, 1, 32, 32), generator=generator)
    seg = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=float(use_dice_loss), lambda_ce=float(use_ce_loss))
    aux = PixelTextAlignmentLoss(temperature=0.07)
    expected = seg(outputs["pred"], label) + 0.1 * aux(outputs["pixel_text_similarity"], label)
    torch.testing.assert_close(loss_fn(outputs, label), expected, rtol=0, atol=0)

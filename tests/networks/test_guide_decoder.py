"""GuideDecoder-like baseline: shapes, that the report steers the mask, default prompt, broadcasting, which parameters
train, and that text padding is masked."""

import pytest
import torch
from monai_ext.clip import TINY_CLIP_NAME
from monai_ext.losses import DiceBCELoss
from monai_ext.networks.nets import GuideDecoderNet

SIZE = 224
REPORTS = ["Upper left lung infection.", "Lower right lung infection."]


def make_net(**kwargs):
    torch.manual_seed(0)
    net = GuideDecoderNet(clip_model_name=TINY_CLIP_NAME, **kwargs)
    return net.eval()


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("size", [(SIZE, SIZE), (100, 72)])  # 100 x 72: not a multiple of 16, not square
def test_output_shape(tokenizer, in_channels, size):
    net = make_net(in_channels=in_channels)
    with torch.no_grad():
        out = net(torch.rand(2, in_channels, *size), tokenizer(REPORTS))
    assert out.shape == (2, 1, *size)


def test_training_mode_returns_the_logits_alone(tokenizer):
    net = make_net()
    image, tokens = torch.rand(2, 1, SIZE, SIZE), tokenizer(REPORTS)
    with torch.no_grad():
        logits = net(image, tokens)
        trained = net.train()(image, tokens, tokens.unsqueeze(1))  # knowledge tokens are accepted and ignored
    assert isinstance(trained, torch.Tensor)
    torch.testing.assert_close(trained, logits)  # no layer behaves differently in training


def test_text_changes_output_and_default_prompt(tokenizer):
    net = make_net()
    image = torch.rand(1, 1, SIZE, SIZE)
    with torch.no_grad():
        left = net(image, tokenizer(REPORTS[:1]))
        right = net(image, tokenizer(REPORTS[1:]))
        default = net(image)
        explicit_default = net(image, tokenizer(["Pulmonary infection in the lungs."]))
        other_default = make_net(default_prompt=REPORTS[0])(image)
    assert (left - right).abs().max() > 1e-4
    torch.testing.assert_close(default, explicit_default)
    torch.testing.assert_close(other_default, left)  # the default_prompt argument is the one used
    assert (default - left).abs().max() > 1e-4


def test_one_report_broadcasts_over_a_batch_of_slices(tokenizer):
    net = make_net()
    tokens = tokenizer(["Ground-glass opacity in the lower left lobe."])
    images = torch.rand(3, 1, SIZE, SIZE)
    with torch.no_grad():
        batched = net(images, tokens)
        single = net(images[1:2], tokens)
        repeated = net(images, tokens.expand(3, -1))
        flat = net(images, tokens[0])  # a 1-D token row is one report
    torch.testing.assert_close(batched[1:2], single, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(batched, repeated, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(flat, batched)
    with pytest.raises(ValueError, match="2 reports for 3 images"):
        net(images, tokens.expand(2, -1))


def test_only_non_clip_parameters_train(tokenizer):
    net = make_net().train()
    clip_params = list(net.text_encoder.parameters())
    assert clip_params and all(not p.requires_grad for p in clip_params)
    image = torch.rand(2, 1, SIZE, SIZE)
    label = (torch.rand(2, 1, SIZE, SIZE) > 0.7).float()
    DiceBCELoss()(net(image, tokenizer(REPORTS)), label).backward()
    assert all(p.grad is None for p in clip_params)
    clip_ids = {id(p) for p in clip_params}
    trainable = [p for p in net.parameters() if id(p) not in clip_ids]
    assert trainable and all(p.requires_grad and p.grad is not None for p in trainable)
    # The guide layers (text projection included) really receive gradient through the cross-attention.
    assert all(layer.text_projection.weight.grad.abs().sum() > 0 for layer in net.guide_layers)
    counts = net.count_parameters()
    assert counts["trainable"] == sum(p.numel() for p in trainable)
    assert counts["total"] == counts["trainable"] + sum(p.numel() for p in clip_params)


def test_text_padding_is_masked(tokenizer):
    """Features at padding positions (after end-of-text) must not reach the output.

    The text encoder's token features are replaced by noise at the padding positions of the shorter report: unchanged
    output means the cross-attention's key_padding_mask is honoured, and the same noise at word positions shows the
    test can tell.
    """
    net = make_net()
    image = torch.rand(2, 1, SIZE, SIZE)
    tokens = tokenizer(["Infection.", REPORTS[0]])  # the shorter report is padded to the longer one's length

    def noisy(at_padding):
        def hook(module, args, output):
            projected, pooled, padding_mask = output
            assert padding_mask.any() and not padding_mask.all()
            where = padding_mask if at_padding else ~padding_mask
            noise = torch.randn(projected.shape, generator=torch.Generator().manual_seed(1)) * 10
            projected = torch.where(where.unsqueeze(-1), projected + noise, projected)  # new tensor: cache untouched
            return projected, pooled, padding_mask

        return net.text_encoder.register_forward_hook(hook)

    with torch.no_grad():
        clean = net(image, tokens)
        handle = noisy(True)
        padded_noise = net(image, tokens)
        handle.remove()
        handle = noisy(False)
        word_noise = net(image, tokens)
        handle.remove()
    torch.testing.assert_close(padded_noise, clean)
    assert (word_noise - clean).abs().max() > 1e-4


def test_wrong_config_arguments():
    with pytest.raises(ValueError, match="channels needs 5"):
        GuideDecoderNet(clip_model_name=TINY_CLIP_NAME, channels=(8, 16))
    with pytest.raises(ValueError, match="attention_heads"):
        GuideDecoderNet(clip_model_name=TINY_CLIP_NAME, channels=(16, 32, 64, 128, 256), attention_heads=3)

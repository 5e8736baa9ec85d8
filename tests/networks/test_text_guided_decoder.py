"""TextGuidedPixelDecoder: shapes, the similarity map the logits add, text steering the class maps, per-image text,
input checks."""

import pytest
import torch
import torch.nn.functional as F
from monai_ext.networks.blocks.text_guided_decoder import TextGuidedPixelDecoder


def make_decoder(num_classes=3):
    torch.manual_seed(0)
    return TextGuidedPixelDecoder(in_channels=(8, 16, 16), text_dim=12, num_classes=num_classes, channels=16).eval()


def features(batch=2):
    torch.manual_seed(1)
    return [torch.rand(batch, 8, 16, 16), torch.rand(batch, 16, 8, 8), torch.rand(batch, 16, 4, 4)]


def test_shapes_and_gradients():
    decoder = make_decoder().train()
    text = torch.randn(3, 12, requires_grad=True)
    logits, similarity = decoder(features(), text, output_size=(64, 64))
    assert logits.shape == (2, 3, 64, 64)
    assert similarity.shape == (2, 3, 16, 16)  # K channels at the finest level, whatever the text width
    logits.mean().backward()
    assert text.grad.abs().sum() > 0
    assert all(p.grad is not None for p in decoder.parameters())
    unresized, _ = decoder(features(), text)
    assert unresized.shape == (2, 3, 16, 16)


def test_similarity_is_the_cosine_the_logits_add():
    decoder = make_decoder()
    text = torch.randn(3, 12)
    captured = {}
    decoder.conv_head.register_forward_pre_hook(lambda module, args: captured.update(pixels=args[0]))
    with torch.no_grad():
        logits, similarity = decoder(features(), text)
        head = decoder.conv_head(captured["pixels"])
    classes = decoder.class_projection(text)
    expected = torch.einsum("bchw,kc->bkhw", F.normalize(captured["pixels"], dim=1), F.normalize(classes, dim=1))
    torch.testing.assert_close(similarity, expected)
    assert similarity.abs().max() <= 1 + 1e-6
    torch.testing.assert_close(logits, head + decoder.logit_scale.exp() * similarity)


def test_class_maps_follow_their_text_embedding():
    decoder = make_decoder()
    with torch.no_grad():
        decoder.conv_head[-1].weight.zero_()
        decoder.conv_head[-1].bias.zero_()
    text = torch.randn(3, 12)
    order = torch.tensor([2, 0, 1])
    with torch.no_grad():
        logits, _ = decoder(features(), text)
        permuted, _ = decoder(features(), text[order])
        other, _ = decoder(features(), torch.randn(3, 12))
    # Attention over class keys is order-free, so reordering the text reorders exactly the class maps.
    torch.testing.assert_close(permuted, logits[:, order])
    assert (other - logits).abs().max() > 1e-3


def test_per_image_class_embeddings():
    decoder = make_decoder()
    shared = torch.randn(3, 12)
    per_image = torch.stack([shared, torch.randn(3, 12)])
    with torch.no_grad():
        a, _ = decoder(features(), shared)
        b, _ = decoder(features(), per_image)
    torch.testing.assert_close(a[0], b[0])
    assert (a[1] - b[1]).abs().max() > 1e-3


def test_input_checks():
    decoder = make_decoder()
    with pytest.raises(ValueError, match="Expected 3 feature levels"):
        decoder(features()[:2], torch.randn(3, 12))
    with pytest.raises(ValueError, match=r"class_embeddings must be \[3, 12\]"):
        decoder(features(), torch.randn(4, 12))
    with pytest.raises(ValueError, match=r"Feature level 1 must be \[B, 16, H, W\]"):
        decoder([features()[0], torch.rand(2, 8, 8, 8), features()[2]], torch.randn(3, 12))
    with pytest.raises(ValueError, match="num_heads"):
        TextGuidedPixelDecoder(in_channels=(8,), text_dim=12, num_classes=2, channels=10, num_heads=4)

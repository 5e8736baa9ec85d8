"""ClipImageEncoder / ClipTextEncoder on the tiny CLIP: shapes, equivalence with open_clip, freezing, caching."""

import pytest
import torch
from monai_ext.clip import TINY_CLIP_NAME, create_clip, get_clip_tokenizer
from monai_ext.networks.blocks.clip_encoders import ClipImageEncoder, ClipTextEncoder, default_layer_indices


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return create_clip(TINY_CLIP_NAME)


@pytest.fixture(scope="module")
def tokenize():
    return get_clip_tokenizer(TINY_CLIP_NAME)


def test_default_layer_indices():
    assert default_layer_indices(12) == (3, 6, 9, 12)
    assert default_layer_indices(4) == (1, 2, 3, 4)
    assert default_layer_indices(24) == (6, 12, 18, 24)


def test_image_encoder_shapes_and_global_embedding(clip):
    encoder = ClipImageEncoder(clip)
    assert (encoder.out_channels, encoder.embed_dim, encoder.patch_size) == (128, 64, 16)
    images = torch.rand(2, 3, 224, 224)
    maps, embedding = encoder(images)
    assert [m.shape for m in maps] == [torch.Size([2, 128, 14, 14])] * 4
    normalised = (images - encoder.pixel_mean) / encoder.pixel_std
    with torch.no_grad():
        assert torch.allclose(embedding, clip.encode_image(normalised), atol=1e-5)
    # the deepest map is the last block's patch tokens, and shallower depths differ from it
    assert not torch.allclose(maps[0], maps[-1])


def test_image_encoder_grayscale_and_other_sizes(clip):
    encoder = ClipImageEncoder(clip, layer_indices=(2, 4))
    gray = torch.rand(1, 1, 224, 224)
    maps_gray, emb_gray = encoder(gray)
    maps_rgb, emb_rgb = encoder(gray.repeat(1, 3, 1, 1))
    assert len(maps_gray) == 2 and torch.equal(emb_gray, emb_rgb) and torch.equal(maps_gray[1], maps_rgb[1])
    maps, embedding = encoder(torch.rand(1, 3, 256, 320))
    assert maps[0].shape == (1, 128, 16, 20) and embedding.shape == (1, 64)


@pytest.mark.parametrize("shape", [(1, 2, 224, 224), (3, 224, 224), (1, 3, 230, 224)])
def test_image_encoder_rejects_bad_input(clip, shape):
    with pytest.raises(ValueError, match="ClipImageEncoder|patch size"):
        ClipImageEncoder(clip)(torch.rand(*shape))


def test_image_encoder_rejects_bad_layer_indices(clip):
    with pytest.raises(ValueError, match=r"\[1, 4\]"):
        ClipImageEncoder(clip, layer_indices=(0, 5))


def test_frozen_encoders_stay_frozen_in_train_mode(clip):
    image_encoder = ClipImageEncoder(clip)
    text_encoder = ClipTextEncoder(clip)
    image_encoder.train()
    text_encoder.train()
    assert not image_encoder.visual.training
    assert not any(p.requires_grad for p in image_encoder.parameters())
    assert not any(p.requires_grad for p in text_encoder.parameters())
    maps, embedding = image_encoder(torch.rand(1, 3, 224, 224))
    assert embedding.grad_fn is None and maps[0].grad_fn is None


def test_trainable_image_encoder_gets_gradients():
    torch.manual_seed(0)
    encoder = ClipImageEncoder(create_clip(TINY_CLIP_NAME), frozen=False)
    maps, embedding = encoder(torch.rand(1, 3, 224, 224))
    (maps[0].mean() + embedding.mean()).backward()
    assert encoder.visual.conv1.weight.grad is not None and encoder.visual.training is False
    encoder.train()
    assert encoder.visual.training


def test_text_encoder_outputs_match_open_clip(clip, tokenize):
    encoder = ClipTextEncoder(clip, cache=False)
    tokens = tokenize(["Bilateral lower lung infection.", "Upper left lobe nodule."])
    projected, pooled, padding = encoder(tokens)
    assert projected.shape == (2, 77, 64) and pooled.shape == (2, 64)
    with torch.no_grad():
        assert torch.allclose(pooled, clip.encode_text(tokens), atol=1e-5)
    assert torch.equal(padding, tokens == 0) and padding.dtype == torch.bool
    torch.testing.assert_close(encoder.encode_pooled(tokens), pooled)


def test_cached_encoding_cut_to_the_text_equals_the_full_context(clip, tokenize):
    """CLIP's causal mask makes a token's features independent of the padding after it: cutting it is exact."""
    reports = ["Infection.", "Consolidation in the right lower zone with air bronchograms and a small effusion.", ""]
    tokens = tokenize(reports)
    full, full_pooled, _ = ClipTextEncoder(clip, cache=False)(tokens)
    cached = ClipTextEncoder(clip)
    projected, pooled, padding = cached(tokens)
    longest = int((tokens != 0).sum(dim=1).max())
    assert projected.shape == (3, longest, 64) and torch.equal(padding, tokens[:, :longest] == 0)
    keep = ~padding
    torch.testing.assert_close(projected[keep], full[:, :longest][keep], atol=1e-5, rtol=1e-5)
    assert torch.all(projected[padding] == 0)
    torch.testing.assert_close(pooled, full_pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached.encode_pooled(tokens), full_pooled, atol=1e-5, rtol=1e-5)


def test_text_encoder_encodes_each_report_once_in_fixed_shape_batches(clip, tokenize):
    encoder = ClipTextEncoder(clip, miss_batch_size=4, length_multiple=8)
    calls = []
    encoder.transformer.register_forward_hook(lambda module, args, out: calls.append(tuple(args[0].shape[:2])))
    long_report = "Patchy consolidation in both lower zones, worse on the right, with a small left pleural effusion."
    reports = ["Infection in the left lung.", "No infection.", "Infection in the left lung.", long_report]
    first = encoder(tokenize(reports))
    second = encoder(tokenize(reports[::-1]))
    long_length = -(-int((tokenize([long_report]) != 0).sum()) // 8) * 8
    # Two distinct short reports in one padded call of 4 rows x 8 tokens, the long one alone in its own length.
    assert sorted(calls) == sorted([(4, 8), (4, long_length)])
    assert encoder.cache.misses == 3 and encoder.cache.hits == 5
    for a, b in zip(first, second):
        assert torch.equal(a, b.flip(0))
    assert not any("cache" in key for key in encoder.state_dict())


def test_cache_keeps_only_what_is_read_in_owned_memory(clip, tokenize):
    encoder = ClipTextEncoder(clip)
    tokens = tokenize(["Right middle lobe consolidation.", "Nodule."])
    lengths = (tokens != 0).sum(dim=1).tolist()
    encoder(tokens)
    token_bytes = sum(n * 64 * 4 for n in lengths)
    key_bytes = sum(n * 8 for n in lengths)  # the int64 tokens of each text
    held = encoder.cache.nbytes - key_bytes
    assert held == token_bytes  # projected features of the text's own tokens, nothing else
    encoder.encode_pooled(tokens)
    assert encoder.cache.nbytes - 2 * key_bytes - token_bytes == 2 * 64 * 4  # a pooled entry: one embedding
    # Entries own their memory: they do not keep the encoding call's whole output alive.
    values = list(encoder.cache._store.values())
    assert all(value.untyped_storage().nbytes() == value.numel() * value.element_size() for value in values)


def test_text_cache_bound_evicts_least_recently_used(clip, tokenize):
    one_report = int((tokenize(["Left lung."]) != 0).sum()) * (64 * 4 + 8)
    encoder = ClipTextEncoder(clip, cache_max_bytes=2 * one_report)
    for text in ("Left lung.", "Our lung.", "Left lung.", "Any lung."):
        encoder(tokenize([text]))
    assert len(encoder.cache) == 2 and encoder.cache.nbytes <= 2 * one_report and encoder.cache.evictions == 1
    assert encoder.cache.misses == 3
    encoder(tokenize(["Our lung."]))  # evicted by "Any lung." (least recently used after "Left lung." came back)
    assert encoder.cache.misses == 4


def test_cached_embedding_does_not_depend_on_the_batch_that_first_met_it(clip, tokenize):
    """A resumed training starts with a cold cache and meets its reports in other batches than the first run did."""
    reports = [f"Infection in {n} areas of the {side} lung." for n in ("two", "three") for side in ("left", "right")]
    reports.append("Bilateral pulmonary infection.")
    warm = ClipTextEncoder(clip)
    warm(tokenize(reports[:2]))  # other batch compositions than the single reports below
    warm(tokenize(reports[2:]))
    for index in range(len(reports)):
        cold = ClipTextEncoder(clip)
        alone = cold(tokenize(reports[index : index + 1]))
        cached = warm(tokenize(reports[index : index + 1]))
        assert warm.cache.misses == len(reports)  # served from the cache filled by the batches of two and three
        for a, b in zip(alone, cached):
            assert torch.equal(a, b), reports[index]


def test_loading_new_weights_drops_cached_embeddings(tokenize):
    torch.manual_seed(0)
    encoder = ClipTextEncoder(create_clip(TINY_CLIP_NAME))
    torch.manual_seed(1)
    other = ClipTextEncoder(create_clip(TINY_CLIP_NAME))
    tokens = tokenize(["Right middle lobe consolidation."])
    before = encoder(tokens)[1]
    parent = torch.nn.Sequential(encoder)  # loading through a parent module must clear the cache too
    parent.load_state_dict(torch.nn.Sequential(other).state_dict())
    after = encoder(tokens)[1]
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, other(tokens)[1])


def test_text_cache_cleared_when_moved_and_works_under_autocast(clip, tokenize):
    encoder = ClipTextEncoder(create_clip(TINY_CLIP_NAME))
    tokens = tokenize(["Right middle lobe consolidation."])
    encoder(tokens)
    assert len(encoder.cache) == 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, pooled_bf16, _ = encoder(tokens)
    # Autocast outputs are cached apart, in the compute dtype (half the bytes).
    assert pooled_bf16.dtype == torch.bfloat16 and len(encoder.cache) == 2
    float32_entry, bf16_entry = encoder.cache._store.values()
    assert bf16_entry.dtype == torch.bfloat16 and bf16_entry.nbytes * 2 == float32_entry.nbytes
    encoder.double()
    assert len(encoder.cache) == 0
    assert encoder(tokens)[1].dtype == torch.float64


def test_text_encoder_rejects_bad_tokens(clip):
    encoder = ClipTextEncoder(clip)
    with pytest.raises(ValueError, match="context length 77"):
        encoder(torch.zeros(1, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="integer tokens"):
        encoder(torch.zeros(1, 77))


def test_text_cache_keeps_inference_mode_outputs_apart(tokenize):
    encoder = ClipTextEncoder(create_clip(TINY_CLIP_NAME))
    tokens = tokenize(["Lower left lung infection."])
    with torch.inference_mode():
        encoder(tokens)
    projected = encoder(tokens)[0]
    assert not projected.is_inference() and len(encoder.cache) == 2
    weight = torch.ones(64, requires_grad=True)
    (projected * weight).sum().backward()  # usable in a training graph
    assert weight.grad is not None

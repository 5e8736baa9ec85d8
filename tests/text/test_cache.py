"""TextEmbeddingCache: only misses are computed, in one batch; counters; LRU limit; key building."""

import pytest
import torch
from monai_ext.text import TextEmbeddingCache


class CountingEncoder:
    """Fake frozen encoder: records every batch it is asked to encode."""

    def __init__(self):
        self.batches = []

    def __call__(self, texts):
        self.batches.append(list(texts))
        lengths = torch.tensor([float(len(t)) for t in texts])
        return lengths.unsqueeze(1).repeat(1, 3), lengths


def test_each_distinct_report_encoded_once():
    cache = TextEmbeddingCache()
    encoder = CountingEncoder()
    reports = ["left lung", "bilateral infection", "left lung"]
    keys = [cache.make_key("enc", r) for r in reports]
    features, lengths = cache.get_or_compute(keys, lambda missing: encoder([reports[i] for i in missing]))
    assert encoder.batches == [["left lung", "bilateral infection"]]
    assert lengths.tolist() == [9.0, 19.0, 9.0] and features.shape == (3, 3)
    more = ["bilateral infection", "right lung"]
    _, lengths = cache.get_or_compute(
        [cache.make_key("enc", r) for r in more], lambda missing: encoder([more[i] for i in missing])
    )
    assert encoder.batches[-1] == ["right lung"] and lengths.tolist() == [19.0, 10.0]
    assert (cache.hits, cache.misses, len(cache)) == (2, 3, 3)
    cache.get_or_compute([cache.make_key("enc", "left lung")], lambda missing: pytest.fail("should be cached"))


def test_keys_separate_encoders_and_token_tensors():
    cache = TextEmbeddingCache()
    row = torch.tensor([49406, 320, 49407, 0])
    assert cache.make_key("a", row) == cache.make_key("a", row.clone())
    assert cache.make_key("a", row) != cache.make_key("b", row)
    assert cache.make_key("a", row) != cache.make_key("a", row.int())
    assert cache.make_key("a", "text") != cache.make_key("a", row)
    with pytest.raises(TypeError):
        cache.make_key("a", 3)


def test_single_tensor_values_and_lru_limit():
    cache = TextEmbeddingCache(max_entries=2)
    calls = []

    def compute(names):
        def fn(missing):
            calls.append([names[i] for i in missing])
            return torch.tensor([[float(ord(names[i]))] for i in missing])

        return fn

    for names in (["a"], ["b"], ["a"], ["c"], ["b"]):
        out = cache.get_or_compute([("k", n) for n in names], compute(names))
        assert out.shape == (1, 1) and out.item() == float(ord(names[0]))
    # "a" was used after "b", so "b" was evicted by "c" and recomputed
    assert calls == [["a"], ["b"], ["c"], ["b"]] and len(cache) == 2


def test_bad_usage_is_reported():
    with pytest.raises(ValueError, match="max_entries"):
        TextEmbeddingCache(max_entries=0)
    cache = TextEmbeddingCache()
    with pytest.raises(ValueError, match="first dimension"):
        cache.get_or_compute([("k", 1), ("k", 2)], lambda missing: torch.zeros(1, 4))
    with pytest.raises(ValueError, match="at least one key"):
        cache.get_or_compute([], lambda missing: torch.zeros(0))

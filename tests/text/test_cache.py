"""TextEmbeddingCache: only misses are computed, once per distinct key; counters; the bound in bytes; key building."""

import pytest
import torch
from monai_ext.text import TextEmbeddingCache


class CountingEncoder:
    """Fake frozen encoder: records every batch it is asked to encode; one (features, length) value per text."""

    def __init__(self):
        self.batches = []

    def __call__(self, texts):
        self.batches.append(list(texts))
        return [(torch.full((3,), float(len(t))), torch.tensor(float(len(t)))) for t in texts]


def test_each_distinct_report_encoded_once():
    cache = TextEmbeddingCache()
    encoder = CountingEncoder()
    reports = ["left lung", "bilateral infection", "left lung"]
    keys = [cache.make_key("enc", r) for r in reports]
    values = cache.get_or_compute(keys, lambda missing: encoder([reports[i] for i in missing]))
    assert encoder.batches == [["left lung", "bilateral infection"]]
    assert [float(length) for _, length in values] == [9.0, 19.0, 9.0] and values[0][0].shape == (3,)
    more = ["bilateral infection", "right lung"]
    values = cache.get_or_compute(
        [cache.make_key("enc", r) for r in more], lambda missing: encoder([more[i] for i in missing])
    )
    assert encoder.batches[-1] == ["right lung"] and [float(length) for _, length in values] == [19.0, 10.0]
    assert (cache.hits, cache.misses, len(cache)) == (2, 3, 3)
    cache.get_or_compute([cache.make_key("enc", "left lung")], lambda missing: pytest.fail("should be cached"))
    assert cache.stats()["hit_rate"] == 3 / 6
    cache.reset_counters()
    assert cache.stats()["hit_rate"] is None and len(cache) == 3


def test_keys_separate_encoders_and_token_tensors():
    cache = TextEmbeddingCache()
    row = torch.tensor([49406, 320, 49407, 0])
    assert cache.make_key("a", row) == cache.make_key("a", row.clone())
    assert cache.make_key("a", row) != cache.make_key("b", row)
    assert cache.make_key("a", row) != cache.make_key("a", row.int())
    assert cache.make_key("a", "text") != cache.make_key("a", row)
    with pytest.raises(TypeError):
        cache.make_key("a", 3)


def test_bound_in_bytes_evicts_least_recently_used():
    # Each entry: 4 float32 (16 bytes) and a key payload of one character (the last part of the key).
    cache = TextEmbeddingCache(max_bytes=2 * 17)
    calls = []

    def compute(names):
        def fn(missing):
            calls.append([names[i] for i in missing])
            return [torch.full((4,), float(ord(names[i]))) for i in missing]

        return fn

    for names in (["a"], ["b"], ["a"], ["c"], ["b"]):
        (value,) = cache.get_or_compute([("k", n) for n in names], compute(names))
        assert value[0].item() == float(ord(names[0]))
    # "a" was used after "b", so "b" was evicted by "c" and recomputed (which evicted "a").
    assert calls == [["a"], ["b"], ["c"], ["b"]] and len(cache) == 2
    assert cache.nbytes == 34 and cache.evictions == 2
    assert cache.stats()["bytes"] == 34 and cache.stats()["max_bytes"] == 34
    # An entry larger than the bound is handed back but not kept.
    (large,) = cache.get_or_compute([("k", "d")], lambda missing: [torch.zeros(100)])
    assert large.shape == (100,) and ("k", "d") not in cache and cache.nbytes == 34
    cache.clear()
    assert cache.nbytes == 0 and len(cache) == 0


def test_bad_usage_is_reported():
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="max_bytes"):
            TextEmbeddingCache(max_bytes=bad)
    cache = TextEmbeddingCache()
    with pytest.raises(ValueError, match="2 missing items"):
        cache.get_or_compute([("k", 1), ("k", 2)], lambda missing: [torch.zeros(4)])
    with pytest.raises(ValueError, match="at least one key"):
        cache.get_or_compute([], lambda missing: [])

"""TextCacheStatsHandler: per-epoch entries, bytes against the bound and hit rate of a network's text caches."""

import logging

import torch
from ignite.engine import Engine
from monai_ext.clip import TINY_CLIP_NAME, get_clip_tokenizer
from monai_ext.handlers import TextCacheStatsHandler, text_caches
from monai_ext.networks import TGCNet

REPORTS = ["Left lung infection.", "Right lung infection.", "Bilateral infection.", "Left lung infection."]


def _run(network, epochs):
    tokens = get_clip_tokenizer(TINY_CLIP_NAME)(REPORTS)

    def step(engine, batch):
        with torch.no_grad():
            network.text_encoder(batch)

    engine = Engine(step)
    handler = TextCacheStatsHandler(network)
    handler.attach(engine)
    engine.run([tokens[:2], tokens[2:]], max_epochs=epochs)
    return handler


def test_hit_rate_and_memory_per_epoch(caplog):
    torch.manual_seed(0)
    network = TGCNet(clip_model_name=TINY_CLIP_NAME)
    assert list(text_caches(network)) == ["text_encoder"]
    with caplog.at_level(logging.INFO, logger="monai_ext.handlers"):
        handler = _run(network, epochs=2)
    first, second = handler.epochs
    # Epoch 1: three distinct reports encoded, the repeated one served; epoch 2: all served from the cache.
    assert (first["misses"], first["hits"], first["entries"]) == (3, 1, 3)
    assert (second["misses"], second["hits"], second["hit_rate"]) == (0, 4, 1.0)
    assert first["bytes"] == second["bytes"] == network.text_encoder.cache.nbytes > 0
    assert first["max_bytes"] == 2**30
    lines = [r.getMessage() for r in caplog.records if "text cache" in r.getMessage()]
    assert len(lines) == 2 and "hit rate 25.0%" in lines[0] and "hit rate 100.0%" in lines[1]
    assert "3 entries" in lines[0] and "KiB of 1024 MiB" in lines[0]


def test_a_bound_too_small_shows_as_evictions_every_epoch():
    torch.manual_seed(0)
    network = TGCNet(clip_model_name=TINY_CLIP_NAME, text_cache_max_bytes=4096)  # about one report of the tiny CLIP
    handler = _run(network, epochs=2)
    assert all(record["evictions"] > 0 and record["hit_rate"] < 1 for record in handler.epochs)
    assert all(record["bytes"] <= 4096 for record in handler.epochs)

"""LoaderWaitMonitor: per-epoch images/s and the share of time spent waiting for data, on an ignite engine whose
loader or step is made slow on purpose; and the bundles' trainers carry it."""

import json
import os
import time

import pytest
import torch
from ignite.engine import Engine
from monai_ext.handlers import LoaderWaitMonitor

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAUSE = 0.03


class SlowLoader:
    """Batches of ``batch`` images, each fetch sleeping ``delay`` seconds."""

    def __init__(self, n_batches: int, batch: int, delay: float):
        self.n_batches, self.batch, self.delay = n_batches, batch, delay

    def __len__(self):
        return self.n_batches

    def __iter__(self):
        for _ in range(self.n_batches):
            time.sleep(self.delay)
            yield {"image": torch.zeros(self.batch, 1, 4, 4)}


def run(loader_delay: float, step_delay: float, epochs: int = 2) -> LoaderWaitMonitor:
    engine = Engine(lambda engine, batch: time.sleep(step_delay))
    monitor = LoaderWaitMonitor(log=False)
    monitor.attach(engine)
    engine.run(SlowLoader(n_batches=4, batch=3, delay=loader_delay), max_epochs=epochs)
    return monitor


def test_slow_loader_shows_as_waiting():
    monitor = run(loader_delay=PAUSE, step_delay=0.0)
    assert [e["epoch"] for e in monitor.epochs] == [1, 2]
    assert all(e["images"] == 12 for e in monitor.epochs)
    assert all(e["wait_fraction"] > 0.8 for e in monitor.epochs)
    assert all(e["wait_seconds"] >= 4 * PAUSE * 0.9 for e in monitor.epochs)


def test_slow_step_shows_as_not_waiting():
    monitor = run(loader_delay=0.0, step_delay=PAUSE)
    assert all(e["wait_fraction"] < 0.2 for e in monitor.epochs)
    for epoch in monitor.epochs:
        assert epoch["seconds"] >= 4 * PAUSE * 0.9
        assert epoch["images_per_s"] == pytest.approx(12 / epoch["seconds"])


def test_logs_one_line_per_epoch(caplog):
    engine = Engine(lambda engine, batch: None)
    LoaderWaitMonitor().attach(engine)
    with caplog.at_level("INFO", logger="monai_ext.handlers"):
        engine.run(SlowLoader(n_batches=2, batch=5, delay=0.0), max_epochs=3)
    lines = [r.getMessage() for r in caplog.records if "waiting for data" in r.getMessage()]
    assert len(lines) == 3 and "10 images" in lines[0]


@pytest.mark.parametrize("bundle", ["tgcnet", "vlsanet"])
def test_bundle_trainers_carry_the_monitor(bundle):
    with open(os.path.join(REPO, "bundles", bundle, "configs", "train.json")) as f:
        handlers = json.load(f)["train"]["handlers"]
    assert any(handler.get("_target_") == "monai_ext.handlers.LoaderWaitMonitor" for handler in handlers)

"""EpochSeeder under several processes: rank 0 keeps the single-process stream, other ranks draw their own."""

from __future__ import annotations

import torch
from ignite.engine import Engine
from monai.transforms import Compose, RandGaussianNoise
from monai_ext.handlers import EpochSeeder, epoch_seed


def _draws(**seeder_kwargs) -> list[list[float]]:
    """The transform's noise and torch's numbers of two epochs of two steps each, under an EpochSeeder(seed=5)."""
    transform = Compose([RandGaussianNoise(prob=1.0)])
    draws = []

    def step(engine, batch):
        draws.append(transform(torch.zeros(1, 3)).flatten().tolist() + torch.rand(1).tolist())

    engine = Engine(step)
    EpochSeeder(seed=5, transforms=transform, **seeder_kwargs).attach(engine)
    engine.run([0, 1], max_epochs=2)
    return draws


def test_epoch_seed_of_rank_0_is_the_single_process_seed_and_ranks_differ():
    for seed, epoch in [(0, 1), (3, 7), (123, 2)]:
        assert epoch_seed(seed, epoch, rank=0) == epoch_seed(seed, epoch)
        assert len({epoch_seed(seed, epoch, rank=r) for r in range(4)}) == 4


def test_ranks_draw_different_augmentations_and_each_rank_repeats_its_own():
    single, rank0, rank1 = _draws(), _draws(rank=0), _draws(rank=1)
    assert rank0 == single
    assert _draws(rank=1) == rank1
    assert all(a != b for a, b in zip(rank0, rank1))


def test_default_rank_is_read_from_the_process_group(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: 1)
    assert _draws() == _draws(rank=1)
    assert _draws(rank=0) != _draws(rank=1)

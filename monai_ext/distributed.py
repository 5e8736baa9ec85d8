"""The process's device, its process group and its share of the data under ``torchrun``, for the bundles' configs.

Each helper holds a condition (is there a GPU, is the group already joined, are there fewer items than processes)
that a config would otherwise write into a ``$`` expression; each is safe on any machine: without CUDA a process runs
on the CPU with the ``gloo`` backend, without a process group it holds the whole datalist.

Example (``multi_gpu_train.json``)::

    "device": "$monai_ext.distributed.local_device()",
    "train#dataset#data": {"_target_": "monai_ext.distributed.partition_for_rank", "data": "@train#datalist",
                           "seed": "@seed"},
    "initialize": [{"_target_": "monai_ext.distributed.init_process_group_once", "backend": "@dist_backend",
                    "device": "@device"}],
    "finalize": [{"_target_": "monai_ext.distributed.destroy_process_group_if_initialized"}]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "ddp_device_ids",
    "default_backend",
    "destroy_process_group_if_initialized",
    "init_process_group_once",
    "local_device",
    "partition_for_rank",
]


def local_device() -> torch.device:
    """This process's device: ``cuda:<LOCAL_RANK>`` when CUDA is available, else the CPU.

    ``torchrun`` sets ``LOCAL_RANK`` (the process's GPU on its node); a process started without it uses ``cuda:0``.
    """
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def default_backend() -> str:
    """The process group backend for this machine: ``"nccl"`` with CUDA, ``"gloo"`` on the CPU."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def ddp_device_ids(device: str | torch.device) -> list[torch.device] | None:
    """``device_ids`` of :class:`torch.nn.parallel.DistributedDataParallel` for a module on ``device``: ``[device]``
    on a GPU, ``None`` on the CPU (where DistributedDataParallel takes no device ids)."""
    device = torch.device(device)
    return [device] if device.type == "cuda" else None


def init_process_group_once(backend: str | None = None, device: str | torch.device | None = None) -> None:
    """Join the process group that ``torchrun`` describes in the environment, unless this process already has.

    Ignite (under MONAI's engines and handlers) is told of the group at once, on every rank: left to itself, it looks
    at the group the first time one of its functions is used and sets up a group of its own, a collective step that
    hangs the run when a handler only rank 0 builds (a ``CheckpointSaver``) gets there first.

    Args:
        backend: ``"nccl"``, ``"gloo"``...; ``None`` for :func:`default_backend`.
        device: the process's device; a GPU becomes the current CUDA device first (NCCL communicates on it).
    """
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend or default_backend())
        idist.sync()


def destroy_process_group_if_initialized() -> None:
    """Leave the process group if this process is in one (a no-op otherwise, e.g. after a failed start); ignite is
    told, as by :func:`init_process_group_once`."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        idist.sync()


def partition_for_rank(
    data: Sequence[Any],
    even_divisible: bool = True,
    shuffle: bool = True,
    seed: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
) -> list[Any]:
    """This process's share of a datalist, as :func:`monai.data.partition_dataset` splits it for ``num_partitions``
    processes: each process then loads, caches (``CacheDataset``, a text-embedding cache) and trains on its share
    only, and shuffles within it every epoch (its ``DataLoader``'s ``shuffle``).

    The order is shuffled once with ``seed`` (the same on every process, so that the shares do not overlap), then the
    shares interleave it: process ``r`` of ``n`` takes items ``r``, ``r + n``, ``r + 2n``... With ``even_divisible``
    every share has the same length, the first items of the order being repeated to fill the last round (DDP needs
    the same number of iterations on every process: training). Without it no item is repeated and the shares differ by
    at most one item (metrics over all shares are those of the whole list: validation), except with fewer items than
    processes, where items are repeated so that every process still gets one.

    Args:
        data: the datalist, the same list in the same order on every process.
        even_divisible: give every process the same number of items.
        shuffle: shuffle the order (with ``seed``) before sharing it out.
        seed: the seed of that shuffle.
        rank: the process's rank; ``None`` for the process group's (0 without a group).
        world_size: the number of processes; ``None`` for the process group's (1 without a group).

    Raises:
        ValueError: ``data`` is empty, or ``rank`` is not in ``[0, world_size)``.

    Example::

        partition_for_rank(list(range(5)), shuffle=False, rank=1, world_size=2)  # [1, 3, 0]
        partition_for_rank(list(range(5)), even_divisible=False, shuffle=False, rank=1, world_size=2)  # [1, 3]
        # multi_gpu_train.json: shares of the same length for training, without repeats for validation
        "train#dataset#data": {"_target_": "monai_ext.distributed.partition_for_rank", "data": "@train#datalist",
                               "seed": "@seed"},
        "validate#dataset#data": {"_target_": "monai_ext.distributed.partition_for_rank", "data": "@validate#datalist",
                                  "even_divisible": false, "shuffle": false}
    """
    grouped = dist.is_available() and dist.is_initialized()
    if rank is None:
        rank = dist.get_rank() if grouped else 0
    if world_size is None:
        world_size = dist.get_world_size() if grouped else 1
    if len(data) == 0:
        raise ValueError("partition_for_rank needs at least one item to share out.")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}.")
    order = np.arange(len(data))
    if shuffle:
        np.random.RandomState(seed).shuffle(order)
    if even_divisible or len(data) < world_size:
        order = np.resize(order, -(-len(data) // world_size) * world_size)
    return [data[i] for i in order[rank::world_size]]

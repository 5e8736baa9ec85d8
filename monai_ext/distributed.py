"""The process's device and its process group under ``torchrun``, for the bundles' configs.

Each helper holds a condition (is there a GPU, is the group already joined) that a config would otherwise write into
a ``$`` expression; each is safe on any machine: without CUDA a process runs on the CPU with the ``gloo`` backend.

Example (``multi_gpu_train.json``)::

    "device": "$monai_ext.distributed.local_device()",
    "initialize": [{"_target_": "monai_ext.distributed.init_process_group_once", "backend": "@dist_backend",
                    "device": "@device"}],
    "finalize": [{"_target_": "monai_ext.distributed.destroy_process_group_if_initialized"}]
"""

from __future__ import annotations

import os

import ignite.distributed as idist
import torch
import torch.distributed as dist

__all__ = [
    "ddp_device_ids",
    "default_backend",
    "destroy_process_group_if_initialized",
    "init_process_group_once",
    "local_device",
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

"""monai_ext.distributed: the process's device and process group, whether or not there is a GPU or a group."""

import socket

import ignite.distributed as idist
import pytest
import torch
import torch.distributed as dist
from monai_ext import distributed


def test_local_device_follows_local_rank_on_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert distributed.local_device() == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed.local_device() == torch.device("cuda", 3)
    assert distributed.default_backend() == "nccl"


def test_cpu_device_and_backend_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed.local_device() == torch.device("cpu")
    assert distributed.default_backend() == "gloo"


def test_ddp_device_ids():
    assert distributed.ddp_device_ids("cpu") is None
    assert distributed.ddp_device_ids(torch.device("cuda", 1)) == [torch.device("cuda", 1)]


def test_a_gpu_becomes_the_current_device_before_joining(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", calls.append)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)  # already joined: nothing else happens
    distributed.init_process_group_once("nccl", device="cuda:1")
    distributed.init_process_group_once("gloo", device="cpu")
    assert calls == ["cuda:1"]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_join_once_and_leave_once(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)
    distributed.destroy_process_group_if_initialized()  # no group yet: nothing to leave
    try:
        distributed.init_process_group_once("gloo", device="cpu")
        distributed.init_process_group_once("gloo", device="cpu")  # a second call keeps the group
        assert dist.is_initialized() and dist.get_world_size() == 1 and dist.get_backend() == "gloo"
        assert idist.backend() == "gloo"  # ignite knows of the group (it would otherwise set up its own later)
    finally:
        distributed.destroy_process_group_if_initialized()
    assert not dist.is_initialized() and idist.backend() is None
    distributed.destroy_process_group_if_initialized()

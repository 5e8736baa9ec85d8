"""monai_ext.distributed: the process's device, process group and share of the data, whether or not there is a GPU
or a group."""

import socket

import ignite.distributed as idist
import pytest
import torch
import torch.distributed as dist
from monai.data import partition_dataset
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


@pytest.mark.parametrize("size", [3, 5, 8])
@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("even_divisible", [True, False])
@pytest.mark.parametrize("shuffle", [True, False])
def test_partition_for_rank_is_monai_partition_dataset(size, world_size, even_divisible, shuffle):
    data = [f"item{i}" for i in range(size)]
    expected = partition_dataset(
        data, num_partitions=world_size, shuffle=shuffle, seed=7, even_divisible=even_divisible
    )
    shares = [
        distributed.partition_for_rank(data, even_divisible, shuffle, 7, r, world_size) for r in range(world_size)
    ]
    assert shares == expected
    assert set().union(*shares) == set(data)  # every item has a process
    if not even_divisible:
        assert sum(len(share) for share in shares) == size  # no item twice: metrics over the shares are exact


def test_every_process_gets_an_item_when_there_are_fewer_items_than_processes():
    """(Where MONAI's partition_dataset refuses to split fewer items than partitions.)"""
    for even_divisible in (True, False):
        shares = [
            distributed.partition_for_rank(["a", "b"], even_divisible, False, rank=r, world_size=5) for r in range(5)
        ]
        assert shares == [["a"], ["b"], ["a"], ["b"], ["a"]]


def test_partition_for_rank_takes_rank_and_size_from_the_group(monkeypatch):
    data = list(range(6))
    assert distributed.partition_for_rank(data, shuffle=False) == data  # no group: the whole list
    assert sorted(distributed.partition_for_rank(data, seed=1)) == data
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 2)
    monkeypatch.setattr(dist, "get_world_size", lambda: 3)
    assert distributed.partition_for_rank(data, shuffle=False) == [2, 5]


def test_partition_for_rank_refuses_empty_data_and_bad_ranks():
    with pytest.raises(ValueError, match="at least one item"):
        distributed.partition_for_rank([], rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank must be in"):
        distributed.partition_for_rank([1, 2], rank=2, world_size=2)

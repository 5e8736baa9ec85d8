"""`multi_gpu_train.json` under torchrun: two CPU processes (gloo) train a few iterations and end with the same weights,
on one node (``--nproc_per_node=2``) and as two nodes of one process each (two torchrun launches that meet at a
rendezvous address, as on a cluster; each node's only process has ``LOCAL_RANK`` 0 and a different global rank).

The validation split holds one image for two processes: each process must still get an image to validate.

Each rank trains on and caches its share of the training list and validates its share of the validation list; the
validation metrics are reduced over the ranks: rank 0 reports those of one process over the whole validation list."""

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from monai.data import partition_dataset
from monai_ext.bundle.parser import bundle_parser
from monai_ext.bundle.runner import bundle_run_command
from monai_ext.data import load_lvit_split
from monai_ext.demo import make_chest_xray_dataset
from torch.utils.data import RandomSampler, SequentialSampler

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLE = os.path.join(REPO, "bundles", "tgcnet")
# The training handlers every rank runs (each checks the label map: a rank that stopped alone would hang the others),
# and those (logs, TensorBoard, progress bar; all of the validation's, with its
# best-model saver) only rank 0 runs.
SHARED_HANDLERS = {
    "tgcnet": ["ValidationHandler", "TrainerCheckpoint", "EpochSeeder", "TextCacheStatsHandler"],
    "vlsanet": ["LabelMapCheck", "ValidationHandler", "LrScheduleHandler", "TrainerCheckpoint", "EpochSeeder"],
}
RANK0_HANDLERS = ["StatsHandler", "TensorBoardStatsHandler", "ProgressBar", "LoaderWaitMonitor"]


@pytest.mark.parametrize("bundle", sorted(SHARED_HANDLERS))
@pytest.mark.parametrize("not_rank0", [False, True])
def test_other_ranks_run_only_the_shared_handlers(bundle, not_rank0):
    """``not_rank0`` (which ``multi_gpu_train.json`` sets from the rank) disables the rank-0 handlers through their
    ``_disabled_`` and keeps the trainer checkpoint from writing."""
    fake = [{"image": "a.png", "label": "a.png"}]  # never read: nothing is cached or run
    overrides = {"train#datalist": fake, "validate#datalist": fake, "cache_rate": 0.0, "not_rank0": not_rank0}
    bundle_dir = os.path.join(REPO, "bundles", bundle)
    parser = bundle_parser(bundle_dir, ["configs/demo.json"], overrides, base_config="configs/train.json")
    train = parser.get_parsed_content("train#handlers")
    names = [type(handler).__name__ for handler in train]
    checkpoint = train[names.index("TrainerCheckpoint")]
    validate = parser.get_parsed_content("validate#handlers")
    if not_rank0:
        assert names == SHARED_HANDLERS[bundle] and validate == [] and not checkpoint.save_enabled
    else:
        assert names == SHARED_HANDLERS[bundle] + RANK0_HANDLERS
        assert len(validate) == 3 and checkpoint.save_enabled


@pytest.mark.parametrize("bundle", sorted(SHARED_HANDLERS))
def test_each_rank_loads_its_share(bundle, monkeypatch):
    """Rank 1 of 2: its training dataset holds its share of the training list (shuffled once with the seed, as
    ``monai.data.partition_dataset`` splits it, of the same length on every rank), which its DataLoader shuffles every
    epoch; its validation dataset holds its share of the validation list, without repeats."""
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    train = [{"image": f"train{i}.png", "label": f"train{i}.png"} for i in range(5)]
    val = [{"image": f"val{i}.png", "label": f"val{i}.png"} for i in range(3)]
    overrides = {"train#datalist": train, "validate#datalist": val, "cache_rate": 0.0}
    configs = ["configs/demo.json", "configs/multi_gpu_train.json"]
    parser = bundle_parser(os.path.join(REPO, "bundles", bundle), configs, overrides, base_config="configs/train.json")
    seed = parser.get_parsed_content("seed")
    share = partition_dataset(train, num_partitions=2, shuffle=True, seed=seed, even_divisible=True)[1]
    train_loader = parser.get_parsed_content("train#dataloader")
    assert train_loader.dataset.data == share
    assert isinstance(train_loader.sampler, RandomSampler)
    val_loader = parser.get_parsed_content("validate#dataloader")
    assert val_loader.dataset.data == [val[1]] and isinstance(val_loader.sampler, SequentialSampler)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(command: list[str], nodes: int = 1) -> None:
    """Run a ``monai.bundle run`` command as two CPU processes (gloo) under torchrun: one node of two processes, or
    two nodes of one process each."""
    assert command[1:4] == ["-m", "monai.bundle", "run"]
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    if nodes == 1:
        launches = [[*torchrun, "--standalone", "--nproc_per_node=2", *command[1:]]]
    else:
        address = ["--nnodes=2", "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={_free_port()}"]
        launches = [[*torchrun, *address, f"--node_rank={node}", *command[1:]] for node in range(2)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    procs = [
        subprocess.Popen(launch, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for launch in launches
    ]
    try:
        logs = [proc.communicate(timeout=540)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log[-6000:]


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
@pytest.mark.parametrize("nodes", [1, 2])
def test_two_processes_train_identical_weights(tmp_path, nodes):
    data_dir = str(tmp_path / "data")
    make_chest_xray_dataset(data_dir, n_train=8, n_val=1, n_test=0, image_size=64, seed=0)
    ckpt_dir = tmp_path / "models"
    overrides = {
        "dataset_dir": data_dir,
        "ckpt_dir": str(ckpt_dir),
        "log_dir": str(tmp_path / "runs"),
        "image_size": 64,
        "batch_size": 2,
        "max_epochs": 2,
        # Test-only: every rank saves what it trained, so the ranks can be compared.
        "finalize": [
            "$torch.save(@network_def.state_dict(), @ckpt_dir + f'/rank{torch.distributed.get_rank()}.pt')",
            "$monai_ext.distributed.destroy_process_group_if_initialized()",
        ],
    }
    _torchrun(bundle_run_command(BUNDLE, ["train.json", "demo.json", "multi_gpu_train.json"], overrides), nodes)

    ranks = [torch.load(ckpt_dir / f"rank{r}.pt", map_location="cpu", weights_only=True) for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    trained = [k for k in ranks[0] if ranks[0][k].is_floating_point()]
    for key in trained:
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0, atol=0, msg=f"ranks differ at {key}")
    # The text adapter's up-projection starts at zero: non-zero means the ranks really trained.
    adapter = [k for k in trained if k.startswith("text_adapter") and k.endswith("up.weight")]
    assert adapter and all(ranks[0][k].abs().sum() > 0 for k in adapter)


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_each_rank_caches_its_share_and_rank0_reports_the_whole_validation(tmp_path):
    """Two ranks, 8 training and 3 validation images, two epochs: each rank's text cache holds the distinct reports
    of its share (4 training images, 2 or 1 validation images), not those of the whole training list; the metrics
    rank 0 reports (the additional one, the key metric and its best value, which pick ``model.pt``) are those of one
    process evaluating the same weights on the 3 validation images."""
    data_dir = str(tmp_path / "data")
    make_chest_xray_dataset(data_dir, n_train=8, n_val=3, n_test=0, image_size=64, seed=0)
    ckpt_dir = tmp_path / "models"
    # Knowledge off: the text cache then holds the reports only. One image per validation batch, as in the check.
    common = {"dataset_dir": data_dir, "image_size": 64, "use_knowledge": False, "validate#dataloader#batch_size": 1}
    # Test-only: what every rank holds and reports at the end.
    held_expression = (
        "{'cache_entries': len(@network_def.text_encoder.cache), 'train': [x['image'] for x in @train#dataset#data],"
        " 'validate': [x['image'] for x in @validate#dataset#data], 'metrics': @validate#evaluator.state.metrics,"
        " 'best_metric': @validate#evaluator.state.best_metric}"
    )
    overrides = {
        **common,
        "ckpt_dir": str(ckpt_dir),
        "log_dir": str(tmp_path / "runs"),
        "batch_size": 2,
        "max_epochs": 2,
        "finalize": [
            "$torch.save(@network_def.state_dict(), @ckpt_dir + f'/rank{torch.distributed.get_rank()}.pt')",
            f"$torch.save({held_expression}, @ckpt_dir + f'/held{{torch.distributed.get_rank()}}.pt')",
            "$monai_ext.distributed.destroy_process_group_if_initialized()",
        ],
    }
    _torchrun(bundle_run_command(BUNDLE, ["train.json", "demo.json", "multi_gpu_train.json"], overrides))
    held = [torch.load(ckpt_dir / f"held{r}.pt", weights_only=True) for r in range(2)]

    train, val = load_lvit_split(data_dir, "Train"), load_lvit_split(data_dir, "Val")
    report = {item["image"]: item["text"] for item in train + val}
    assert sorted(held[0]["train"] + held[1]["train"]) == sorted(item["image"] for item in train)
    assert [len(h["validate"]) for h in held] == [2, 1]
    assert sorted(held[0]["validate"] + held[1]["validate"]) == sorted(item["image"] for item in val)
    for share in held:
        assert share["cache_entries"] == len({report[image] for image in share["train"] + share["validate"]})
        assert len({report[image] for image in share["train"]}) < len({item["text"] for item in train})

    assert held[0]["metrics"] == held[1]["metrics"] and held[0]["metrics"].keys() == {"val_mean_dice", "val_mean_iou"}
    parser = bundle_parser(BUNDLE, ["configs/demo.json"], {**common, "validate#handlers": []}, "configs/train.json")
    network, evaluator = parser.get_parsed_content("network_def"), parser.get_parsed_content("validate#evaluator")
    network.load_state_dict(torch.load(ckpt_dir / "rank0.pt", weights_only=True))
    evaluator.run()
    for name, value in held[0]["metrics"].items():
        assert value == pytest.approx(evaluator.state.metrics[name], abs=1e-6), name
    # Rank 0's own share scores otherwise, so that a rank reporting its share alone would fail the check above.
    dice = evaluator.state.metric_details["val_mean_dice"].flatten()
    own = dice[[[item["image"] for item in val].index(image) for image in held[0]["validate"]]].mean().item()
    assert own != pytest.approx(evaluator.state.metrics["val_mean_dice"], abs=1e-3)
    # The best checkpoint rank 0 saved scores the best key metric it reported.
    network.load_state_dict(torch.load(ckpt_dir / "model.pt", weights_only=True))
    evaluator.run()
    assert held[0]["best_metric"] == pytest.approx(evaluator.state.metrics["val_mean_dice"], abs=1e-6)

"""`multi_gpu_train.json` under torchrun: two CPU processes (gloo) train a few iterations and end with the same weights,
on one node (``--nproc_per_node=2``) and as two nodes of one process each (two torchrun launches that meet at a
rendezvous address, as on a cluster; each node's only process has ``LOCAL_RANK`` 0 and a different global rank).

The validation split holds one image for two processes: each process must still get an image to validate."""

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from monai_ext.bundle.parser import bundle_parser
from monai_ext.bundle.runner import bundle_run_command
from monai_ext.demo import make_chest_xray_dataset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLE = os.path.join(REPO, "bundles", "tgcnet")
# The training handlers every rank runs (each checks the label map: a rank that stopped alone would hang the others),
# and those (logs, TensorBoard, progress bar; all of the validation's, with its
# best-model saver) only rank 0 runs.
SHARED_HANDLERS = {
    "tgcnet": ["ValidationHandler", "TrainerCheckpoint", "EpochSeeder"],
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    command = bundle_run_command(BUNDLE, ["train.json", "demo.json", "multi_gpu_train.json"], overrides)
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

    ranks = [torch.load(ckpt_dir / f"rank{r}.pt", map_location="cpu", weights_only=True) for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    trained = [k for k in ranks[0] if ranks[0][k].is_floating_point()]
    for key in trained:
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0, atol=0, msg=f"ranks differ at {key}")
    # The text adapter's up-projection starts at zero: non-zero means the ranks really trained.
    adapter = [k for k in trained if k.startswith("text_adapter") and k.endswith("up.weight")]
    assert adapter and all(ranks[0][k].abs().sum() > 0 for k in adapter)

"""`multi_gpu_train.json` under torchrun: two CPU processes (gloo) train a few iterations and end with the same weights.

The validation split holds one image for two processes: each process must still get an image to validate."""

import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from monai_ext.data.synthetic import make_chest_xray_dataset
from monai_ext.engines.bundle_runner import bundle_run_command

BUNDLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bundles", "tgcnet")


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_two_processes_train_identical_weights(tmp_path):
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
            "$torch.distributed.is_initialized() and torch.distributed.destroy_process_group()",
        ],
    }
    command = bundle_run_command(BUNDLE, ["train.json", "demo.json", "multi_gpu_train.json"], overrides)
    assert command[1:4] == ["-m", "monai.bundle", "run"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *command[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(torchrun, env=env, capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    ranks = [torch.load(ckpt_dir / f"rank{r}.pt", map_location="cpu", weights_only=True) for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    trained = [k for k in ranks[0] if ranks[0][k].is_floating_point()]
    for key in trained:
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0, atol=0, msg=f"ranks differ at {key}")
    # The text adapter's up-projection starts at zero: non-zero means the ranks really trained.
    adapter = [k for k in trained if k.startswith("text_adapter") and k.endswith("up.weight")]
    assert adapter and all(ranks[0][k].abs().sum() > 0 for k in adapter)

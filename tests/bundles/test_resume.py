"""Resume: a TGC-Net bundle training killed with SIGKILL in the middle of an epoch, started again with
``--resume True``, ends with exactly the weights and optimizer state of an uninterrupted run with the same seed (CPU).
On a machine with a GPU, an AMP run on it also resumes with its loss scale (float16 kernels there are not all
deterministic, so its weights are compared with a tolerance).

The kill is a real ``SIGKILL`` sent by the training process to itself at a fixed iteration (an extra config adds the
handler), so the test does not depend on timing."""

import json
import os
import subprocess
import sys

import pytest
import torch
from monai_ext.demo import make_chest_xray_dataset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EPOCHS = 3
# Per bundle: extra command-line overrides; VLSA-Net's demo config generates its fundus data on first use.
BUNDLE_ARGS = {"tgcnet": [], "vlsanet": ["--demo_counts", "{'n_per_domain': 12, 'image_size': 64}", "--num_bases", "8"]}


def _run(tmp, data_dir, name, *extra_configs, resume=False, bundle="tgcnet", gpu=False):
    bundle_dir = os.path.join(REPO, "bundles", bundle)
    configs = [os.path.join(bundle_dir, "configs", n) for n in ("train.json", "demo.json")] + list(extra_configs)
    out = os.path.join(tmp, name)
    cmd = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", json.dumps(configs),
        "--bundle_root", bundle_dir,
        "--dataset_dir", data_dir,
        *BUNDLE_ARGS[bundle],
        "--ckpt_dir", os.path.join(out, "models"),
        "--log_dir", os.path.join(out, "runs"),
        "--output_dir", os.path.join(out, "eval"),
        "--max_epochs", str(EPOCHS),
        "--batch_size", "4",
        "--image_size", "64",
        "--seed", "5",
        "--resume", str(resume),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if not gpu:  # the bundles train on a GPU with AMP whenever one is visible
        env["CUDA_VISIBLE_DEVICES"] = ""
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=240)
    return proc, os.path.join(out, "models", "trainer", "trainer.pt")


@pytest.fixture(scope="module")
def chest_data_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("resume_data"))
    make_chest_xray_dataset(root, n_train=16, n_val=4, n_test=2, image_size=64, seed=1)
    return root


def _full_killed_resumed(tmp, data_dir, bundle, gpu=False):
    """Checkpoints of an uninterrupted run and of a run killed in epoch 2 and resumed, and the iterations per epoch."""
    full, full_ckpt = _run(tmp, data_dir, "full", bundle=bundle, gpu=gpu)
    assert full.returncode == 0, full.stderr[-3000:]
    iters_per_epoch = torch.load(full_ckpt, map_location="cpu", weights_only=True)["trainer"]["iteration"] // EPOCHS
    assert iters_per_epoch >= 2

    kill_at = iters_per_epoch + 1  # in the middle of epoch 2
    killer = os.path.join(tmp, "kill.json")
    with open(killer, "w") as f:
        json.dump(
            {
                "run": [
                    "$@train#trainer.add_event_handler(ignite.engine.Events.ITERATION_COMPLETED(once="
                    f"{kill_at}), lambda engine: os.kill(os.getpid(), 9))",
                    "$@train#trainer.run()",
                ]
            },
            f,
        )
    killed, ckpt = _run(tmp, data_dir, "resumed", killer, bundle=bundle, gpu=gpu)
    assert killed.returncode == -9, killed.stderr[-3000:]
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["trainer"]["epoch"] == 1 and saved["trainer"]["iteration"] == iters_per_epoch
    assert not [n for n in os.listdir(os.path.dirname(ckpt)) if n.endswith(".tmp")]  # no partial file left

    resumed, ckpt = _run(tmp, data_dir, "resumed", resume=True, bundle=bundle, gpu=gpu)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stderr + resumed.stdout
    a = torch.load(full_ckpt, map_location="cpu", weights_only=True)
    b = torch.load(ckpt, map_location="cpu", weights_only=True)
    return a, b, iters_per_epoch


@pytest.mark.parametrize("bundle", ["tgcnet", "vlsanet"])
def test_killed_run_resumes_to_the_same_weights(tmp_path, chest_data_dir, bundle):
    """VLSA-Net's case also covers the EM bases, a buffer updated by moving average in training."""
    tmp = str(tmp_path)
    data_dir = chest_data_dir if bundle == "tgcnet" else os.path.join(tmp, "fundus")
    a, b, iters_per_epoch = _full_killed_resumed(tmp, data_dir, bundle)
    assert "amp_scaler" not in a  # no AMP on the CPU
    assert a["trainer"]["epoch"] == b["trainer"]["epoch"] == EPOCHS
    assert a["trainer"]["iteration"] == b["trainer"]["iteration"] == EPOCHS * iters_per_epoch
    assert a["model"].keys() == b["model"].keys()
    if bundle == "vlsanet":
        assert any("bases" in key for key in a["model"])
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0, msg=key)
    for state_a, state_b in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for key in state_a:
            torch.testing.assert_close(state_a[key], state_b[key], rtol=0, atol=0)


def test_resume_without_checkpoint_starts_from_scratch_and_bad_checkpoint_is_refused(tmp_path):
    from ignite.engine import Engine
    from monai_ext.checkpoint import CheckpointError
    from monai_ext.handlers import TrainerCheckpoint

    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    handler = TrainerCheckpoint(str(tmp_path), {"model": net, "optimizer": opt}, resume=True)
    engine = Engine(lambda e, b: None)
    handler.attach(engine)
    engine.run([0, 1], max_epochs=2)
    assert handler.resumed_from is None and os.path.isfile(handler.path)

    engine = Engine(lambda e, b: None)
    handler.attach(engine)
    engine.run([0, 1], max_epochs=3)
    assert handler.resumed_from == 2 and engine.state.epoch == 3 and engine.state.iteration == 6

    other = TrainerCheckpoint(str(tmp_path), {"model": torch.nn.Linear(3, 1)}, resume=True)
    engine = Engine(lambda e, b: None)
    other.attach(engine)
    with pytest.raises(CheckpointError, match=r"trainer.pt.*'model' does not fit"):
        engine.run([0, 1], max_epochs=3)


def test_a_resumed_warmup_cosine_schedule_continues_and_a_switched_off_one_is_left_out(tmp_path):
    from ignite.engine import Engine, Events
    from monai.handlers import LrScheduleHandler
    from monai.optimizers import WarmupCosineSchedule
    from monai_ext.handlers import TrainerCheckpoint

    def run(max_epochs, folder):
        net = torch.nn.Linear(2, 1)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
        scheduler = WarmupCosineSchedule(opt, warmup_steps=2, t_total=12)
        engine = Engine(lambda e, b: opt.param_groups[0]["lr"])
        rates = []
        engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: rates.append(e.state.output))
        LrScheduleHandler(scheduler, epoch_level=False, print_lr=False).attach(engine)
        save = {"model": net, "optimizer": opt, "lr_scheduler": scheduler}
        TrainerCheckpoint(str(folder), save, resume=True).attach(engine)
        engine.run([0, 1, 2], max_epochs=max_epochs)
        return rates

    whole = run(4, tmp_path / "whole")
    assert run(2, tmp_path / "split") + run(4, tmp_path / "split") == whole
    # A switched-off component (a config's `_disabled_` gives None) is not saved, and not required on resume.
    handler = TrainerCheckpoint(str(tmp_path / "off"), {"model": torch.nn.Linear(2, 1), "lr_scheduler": None})
    assert set(handler.save_dict) == {"model"}


def test_amp_loss_scale_survives_a_resume(tmp_path):
    """A MONAI trainer with amp=True keeps its GradScaler in ``engine.scaler``; resuming must not reset the scale."""
    from ignite.engine import Engine
    from monai_ext.handlers import TrainerCheckpoint

    def run(max_epochs, lower_scale):
        # lower_scale: each step lowers the loss scale, as overflowing fp16 steps would
        engine = Engine(lambda e, b: e.scaler.update(new_scale=64.0) if lower_scale else None)
        engine.scaler = torch.amp.GradScaler("cpu", init_scale=512.0)
        engine.scaler.scale(torch.ones(1))  # the scale tensor is created lazily
        handler = TrainerCheckpoint(str(tmp_path), {"model": torch.nn.Linear(2, 1)}, resume=True)
        handler.attach(engine)
        engine.run([0, 1], max_epochs=max_epochs)
        return handler, engine

    run(1, lower_scale=True)
    assert "amp_scaler" in torch.load(os.path.join(str(tmp_path), "trainer.pt"), weights_only=True)
    handler, engine = run(2, lower_scale=False)
    assert handler.resumed_from == 1 and engine.scaler.get_scale() == 64.0
    with pytest.raises(ValueError, match="reserved"):
        TrainerCheckpoint(str(tmp_path), {"amp_scaler": engine.scaler})


def test_epoch_seeder_makes_each_epoch_a_function_of_seed_and_epoch():
    """Whatever ran before, epoch k draws the same shuffle order, augmentation and torch/numpy numbers."""
    import numpy as np
    from ignite.engine import Engine, Events
    from monai.data import DataLoader
    from monai.transforms import Compose, RandGaussianNoise
    from monai_ext.handlers import EpochSeeder

    def run(start_epoch, warmup_draws):
        transform = Compose([RandGaussianNoise(prob=1.0)])
        loader = DataLoader(list(range(6)), batch_size=2, shuffle=True)
        draws = {}

        def step(engine, batch):
            noise = transform(torch.zeros(1, 2))
            draws.setdefault(engine.state.epoch, []).append(
                (batch.tolist(), noise.flatten().tolist(), float(torch.rand(1)), float(np.random.rand()))
            )

        engine = Engine(step)
        EpochSeeder(seed=3, transforms=transform, dataloader=loader).attach(engine)

        @engine.on(Events.STARTED)
        def _resume(e):
            e.state.epoch, e.state.iteration = start_epoch, start_epoch * 3
            for _ in range(warmup_draws):  # unrelated randomness before the resumed epoch
                transform(torch.zeros(1, 2))
                torch.rand(5)
                np.random.rand()

        engine.run(loader, max_epochs=3)
        return draws

    full, resumed = run(0, 0), run(2, 7)
    assert full[3] == resumed[3]
    assert full[2] != full[3]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_killed_amp_run_on_gpu_resumes_with_its_loss_scale(tmp_path, chest_data_dir):
    a, b, iters_per_epoch = _full_killed_resumed(str(tmp_path), chest_data_dir, "tgcnet", gpu=True)
    assert "amp_scaler" in a and "amp_scaler" in b  # the bundle trains with AMP on a GPU
    assert a["amp_scaler"]["scale"] == b["amp_scaler"]["scale"]
    assert a["trainer"]["iteration"] == b["trainer"]["iteration"] == EPOCHS * iters_per_epoch
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-3, atol=1e-4, msg=key)

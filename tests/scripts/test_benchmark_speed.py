"""scripts/benchmark_speed.py on the CPU with the tiny CLIP: every section produces figures that hang together (FLOPs
of a training step above inference, the training loop counts every image of its timed epochs, waiting shares are
fractions), the files are written, and a model that fails is recorded as a failed row instead of ending the run."""

import json
import os

import pytest
import torch
from script_loader import REPO, load_script
from torch.utils.flop_counter import FlopCounterMode

SMALL = dict(
    device="cpu",
    clip_model_name="monai-textseg-tiny-clip",
    image_size=64,
    batch_sizes=(2,),
    iterations=1,
    warmup=1,
    loader_images=8,
    loader_workers=(0,),
    loader_cache_rates=(1.0,),
    loader_epochs=1,
    loop_workers=(0,),
    loop_batch_size=4,
    loop_epochs=2,
    isolate_rows=False,
)


@pytest.fixture
def speed_script():
    return load_script("benchmark_speed")


def test_all_sections_on_cpu(speed_script, tmp_path):
    out = str(tmp_path / "speed")
    markdown = speed_script.main(output_dir=out, models=("tgcnet", "basicunet"), **SMALL)
    with open(os.path.join(out, "speed.json")) as f:
        results = json.load(f)
    rows = {(r["model"], r["mode"]): r for r in results["models"]}
    assert set(rows) == {(m, mode) for m in ("tgcnet", "basicunet") for mode in ("inference", "train")}
    for model in ("tgcnet", "basicunet"):
        inference, train = rows[model, "inference"], rows[model, "train"]
        assert 0 < inference["gflops_per_image"] < train["gflops_per_image"]
        assert train["images_per_s"] == pytest.approx(2 / (train["ms_per_step"] / 1e3))
    assert rows["tgcnet", "train"]["trainable"] < rows["tgcnet", "train"]["total"]  # CLIP frozen
    assert rows["basicunet", "train"]["trainable"] == rows["basicunet", "train"]["total"]
    (text,) = results["text"]
    assert text["batch"] == 2 and text["cached_ms"] < text["miss_ms_per_report"] * 2
    # The tiny CLIP's 64-d float32 projected features of the report's own tokens, and its int64 tokens as the key.
    assert text["cache_bytes_per_report"] == pytest.approx(text["tokens_per_report"] * (64 * 4 + 8))
    assert text["cache_bytes_per_knowledge_sentence"] == pytest.approx(64 * 4 + text["tokens_per_report"] * 8)
    (pipeline,) = results["data_pipeline"]
    assert pipeline["cache_rate"] == 1.0 and pipeline["images_per_s"] > 0
    (loop,) = results["training_loop"]
    assert loop["images"] == 8 * 2 and loop["amp"] is False  # every image of the 2 timed epochs, none of the first
    assert 0.0 <= loop["wait_fraction"] <= 1.0
    text_md = open(markdown).read()
    assert "## Training loop" in text_md and "## Data pipeline" in text_md
    assert os.path.isfile(os.path.join(out, "throughput.png"))


def test_a_failing_model_becomes_a_failed_row(speed_script, tmp_path, monkeypatch):
    build = speed_script.build_model

    def build_or_fail(name, clip_model_name, image_size):
        if name == "basicunet":
            raise RuntimeError("no kernel for this device\nsecond line")
        return build(name, clip_model_name, image_size)

    monkeypatch.setattr(speed_script, "build_model", build_or_fail)
    out = str(tmp_path / "speed")
    settings = {**SMALL, "batch_sizes": (1,)}
    speed_script.main(
        output_dir=out,
        models=("basicunet", "tgcnet"),
        modes=("inference",),
        text=False,
        data_pipeline=False,
        training_loop=False,
        **settings,
    )
    with open(os.path.join(out, "speed.json")) as f:
        failed, finished = json.load(f)["models"]
    assert failed["error"] == "RuntimeError: no kernel for this device"
    assert finished["model"] == "tgcnet" and finished["images_per_s"] > 0
    assert "failed: RuntimeError: no kernel for this device" in open(os.path.join(out, "speed.md")).read()


def test_rows_in_fresh_processes_measure_their_own_memory(speed_script, tmp_path, monkeypatch):
    """On a CPU each row runs in a spawned process (which imports the script from the scripts folder)."""
    monkeypatch.syspath_prepend(os.path.join(REPO, "scripts"))
    out = str(tmp_path / "speed")
    settings = {**SMALL, "isolate_rows": None, "batch_sizes": (1,)}  # None: isolated, as on a CPU by default
    speed_script.main(
        output_dir=out,
        models=("basicunet",),
        modes=("inference",),
        text=False,
        data_pipeline=False,
        training_loop=False,
        **settings,
    )
    with open(os.path.join(out, "speed.json")) as f:
        rows = json.load(f)["models"]
    (row,) = rows
    assert row["memory_kind"].startswith("peak RSS of a fresh process") and row["images_per_s"] > 0
    assert 0 < row["peak_memory_mib"] < 4096


def test_unknown_variant_is_refused(speed_script, tmp_path):
    with pytest.raises(ValueError, match="bf16_fast"):
        speed_script.main(output_dir=str(tmp_path), variants=("bf16_fast",))


def test_training_step_against_inference(speed_script, tmp_path):
    """VLSA-Net's rows carry the step's tensor peak, and a section sets its training step against its inference."""
    out = str(tmp_path / "speed")
    markdown = speed_script.main(
        output_dir=out, models=("vlsanet",), text=False, data_pipeline=False, training_loop=False, **SMALL
    )
    with open(os.path.join(out, "speed.json")) as f:
        results = json.load(f)
    inference, train = results["models"]
    assert (inference["mode"], train["mode"]) == ("inference", "train")
    assert 0 < inference["peak_step_tensor_mib"] < train["peak_step_tensor_mib"]
    (ratio,) = results["training_vs_inference"]
    assert ratio["model"] == "vlsanet" and ratio["batch"] == 2
    assert ratio["flop_ratio"] == pytest.approx(train["gflops_per_image"] / inference["gflops_per_image"])
    assert ratio["time_ratio"] == pytest.approx(train["ms_per_step"] / inference["ms_per_step"])
    assert ratio["flop_ratio"] > 1 and ratio["train_step_tensor_mib"] == train["peak_step_tensor_mib"]
    assert "## Training step against inference" in open(markdown).read()


def test_flops_are_counted_with_the_text_cache_filled(speed_script):
    """The first call of a network encodes its class prompts once; the count is that of the calls after it."""
    model, channels = speed_script.build_model("vlsanet", SMALL["clip_model_name"], 64)
    inputs = (torch.rand(1, channels, 64, 64),)
    label = torch.zeros(1, 1, 64, 64)
    first = speed_script.count_flops(model.eval(), inputs, label, None)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(*inputs)
    assert first == counter.get_total_flops() > 0


def test_peak_step_memory_counts_the_tensors_alive_together(speed_script):
    kept = torch.ones(2**20, dtype=torch.uint8)  # alive before the step: not counted

    def step():
        first = torch.ones(2**20, dtype=torch.uint8)
        second = torch.ones(2**21, dtype=torch.uint8)
        del first, second
        torch.ones(2**20, dtype=torch.uint8)

    peak = speed_script.peak_step_memory(step, torch.device("cpu"))
    assert 3 * 2**20 <= peak < 3 * 2**20 + 2**16 and kept.numel() == 2**20

"""The TGC-Net bundle end to end: a few-iteration train -> evaluate -> inference run through ConfigWorkflow on generated
demo data, and TorchScript export of the trained weights. The generic Model Zoo checks (required files, metadata schema,
verify_net_in_out, ckpt_export of every bundle) live in tests/bundle/test_model_zoo_checks.py."""

import glob
import json
import os

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow
from monai_ext.bundle.export import check_ckpt_export
from monai_ext.demo import make_chest_xray_dataset
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLE = os.path.join(REPO, "bundles", "tgcnet")
CONFIGS = os.path.join(BUNDLE, "configs")
TRAIN = [os.path.join(CONFIGS, "train.json"), os.path.join(CONFIGS, "demo.json")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Demo data, one short training run; returns the override dict that points the bundle at them."""
    root = tmp_path_factory.mktemp("tgcnet_bundle")
    data_dir = str(root / "data")
    make_chest_xray_dataset(data_dir, n_train=8, n_val=4, n_test=4, image_size=224, seed=3)
    overrides = {
        "bundle_root": BUNDLE,
        "dataset_dir": data_dir,
        "ckpt_dir": str(root / "models"),
        "log_dir": str(root / "runs"),
        "output_dir": str(root / "eval"),
        "max_epochs": 1,
        "batch_size": 4,
    }
    workflow = ConfigWorkflow(config_file=TRAIN, workflow_type="train", **overrides)
    workflow.initialize()
    assert workflow.check_properties() in (None, [])
    workflow.run()
    workflow.finalize()
    return overrides


def test_training_writes_a_checkpoint_that_loads(trained):
    checkpoint = os.path.join(trained["ckpt_dir"], "model.pt")
    assert os.path.isfile(checkpoint)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert any(k.startswith("text_adapter") for k in state)
    assert glob.glob(os.path.join(trained["log_dir"], "events.out.tfevents.*"))


def test_evaluate_writes_report_and_overlays(trained):
    workflow = ConfigWorkflow(
        config_file=TRAIN + [os.path.join(CONFIGS, "evaluate.json")], workflow_type="eval", **trained
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    with open(os.path.join(trained["output_dir"], "report.json")) as f:
        report = json.load(f)
    assert report["num_images"] == 4
    with open(os.path.join(trained["output_dir"], "per_image.csv")) as f:
        assert "test_0000" in f.read()  # rows and overlays are named after the test images
    overlays = sorted(os.path.basename(p) for p in glob.glob(os.path.join(trained["output_dir"], "overlays", "*.png")))
    assert overlays == [f"test_{i:04d}.png" for i in range(4)]


def test_inference_writes_masks_at_input_size(trained, tmp_path):
    out = tmp_path / "pred"
    workflow = ConfigWorkflow(
        config_file=[os.path.join(CONFIGS, "inference.json"), os.path.join(CONFIGS, "demo_inference.json")],
        workflow_type="infer",
        bundle_root=BUNDLE,
        dataset_dir=trained["dataset_dir"],
        datalist_file=os.path.join(trained["dataset_dir"], "datalist.json"),
        ckpt_dir=trained["ckpt_dir"],
        output_dir=str(out),
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    masks = sorted(glob.glob(str(out / "masks" / "*.png")))
    assert len(masks) == 4
    with open(os.path.join(trained["dataset_dir"], "datalist.json")) as f:
        first_image = os.path.join(trained["dataset_dir"], json.load(f)["test"][0]["image"])
    mask = np.asarray(Image.open(masks[0]))
    assert mask.shape == np.asarray(Image.open(first_image)).shape[:2]
    assert set(np.unique(mask)) <= {0, 255}
    assert len(glob.glob(str(out / "overlays" / "*.png"))) == 4


def test_inference_reads_colour_copies_of_a_grey_image_as_the_grey_image(trained, tmp_path):
    with open(os.path.join(trained["dataset_dir"], "datalist.json")) as f:
        grey = np.asarray(Image.open(os.path.join(trained["dataset_dir"], json.load(f)["test"][0]["image"])))
    grey = grey[:, : grey.shape[1] * 3 // 4]  # not square: a swapped axis would show
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(grey).save(folder / "grey.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(folder / "rgb.png")
    Image.fromarray(np.stack([grey] * 3 + [np.full_like(grey, 255)], -1)).save(folder / "rgba.png")
    out = tmp_path / "pred"
    workflow = ConfigWorkflow(
        config_file=[os.path.join(CONFIGS, "inference.json"), os.path.join(CONFIGS, "demo_inference.json")],
        workflow_type="infer",
        bundle_root=BUNDLE,
        dataset_dir=str(folder),
        text="Infection in the upper left lung.",
        ckpt_dir=trained["ckpt_dir"],
        output_dir=str(out),
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    masks = {name: np.asarray(Image.open(out / "masks" / f"{name}_mask.png")) for name in ("grey", "rgb", "rgba")}
    assert masks["grey"].shape == grey.shape
    np.testing.assert_array_equal(masks["rgb"], masks["grey"])
    np.testing.assert_array_equal(masks["rgba"], masks["grey"])


def test_torchscript_export_matches_eager(trained, tmp_path):
    # ckpt_export + torch.jit.load + comparison with the eager network, as in test_model_zoo_checks, on trained weights.
    diff = check_ckpt_export(BUNDLE, TRAIN, os.path.join(trained["ckpt_dir"], "model.pt"), str(tmp_path / "model.ts"))
    assert diff <= 1e-4

"""The VLSA-Net bundle as the MONAI Model Zoo checks it: metadata schema, network in/out without text, TorchScript
export, and a few-iteration train -> evaluate -> inference run through ConfigWorkflow on synthetic fundus data."""

import glob
import json
import os

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out
from monai_ext.demo import make_fundus_dataset
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLE = os.path.join(REPO, "bundles", "vlsanet")
CONFIGS = os.path.join(BUNDLE, "configs")
SCHEMA = os.path.join(REPO, "tests", "resources", "meta_schema_20240725.json")
TRAIN = [os.path.join(CONFIGS, "train.json"), os.path.join(CONFIGS, "demo.json")]
SIZE = 64


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two tiny fundus domains, one short training run on domain_a; returns the overrides pointing at them."""
    root = tmp_path_factory.mktemp("vlsanet_bundle")
    data_dir = str(root / "data")
    make_fundus_dataset(data_dir, n_per_domain=5, image_size=SIZE, seed=1, domains=["domain_a", "domain_b"])
    overrides = {
        "bundle_root": BUNDLE,
        "dataset_dir": os.path.join(data_dir, "domain_a"),
        "datalist_file": os.path.join(data_dir, "domain_a", "datalist.json"),
        "ckpt_dir": str(root / "models"),
        "log_dir": str(root / "runs"),
        "output_dir": str(root / "eval"),
        "image_size": SIZE,
        "max_epochs": 1,
        "batch_size": 2,
    }
    workflow = ConfigWorkflow(config_file=TRAIN, workflow_type="train", **overrides)
    workflow.initialize()
    assert workflow.check_properties() in (None, [])
    workflow.run()
    workflow.finalize()
    return {**overrides, "data_dir": data_dir}


def test_metadata_is_valid_against_the_schema():
    verify_metadata(meta_file=os.path.join(CONFIGS, "metadata.json"), filepath=SCHEMA)


def test_config_ids_and_ablation_switches():
    parser = ConfigParser()
    parser.read_config(TRAIN)
    for key in ("bundle_root", "device", "dataset_dir", "network_def", "network", "train#trainer",
                "validate#evaluator", "train#preprocessing", "train#inferer", "train#postprocessing",
                "validate#preprocessing", "initialize", "run", "finalize", "use_em", "use_text", "alignment_weight"):  # fmt: skip
        assert key in parser, key
    infer = ConfigParser()
    infer.read_config(os.path.join(CONFIGS, "inference.json"))
    for key in ("network_def", "inferer", "preprocessing", "postprocessing", "initialize", "run", "finalize"):
        assert key in infer, key
    assert parser["loss"]["seg_loss"]["_target_"] == "DiceCELoss"
    assert parser["validate"]["key_metric"]["val_mean_dice"]["include_background"] is False
    parser["bundle_root"] = BUNDLE
    parser["image_size"] = SIZE
    parser["use_em"], parser["use_text"], parser["alignment_weight"] = False, False, 0.0
    net = parser.get_parsed_content("network_def")
    assert not net.use_em and not net.use_text
    assert parser.get_parsed_content("loss").weight == 0.0


@pytest.mark.parametrize("global_curve", [False, True])
@pytest.mark.parametrize("class_curve", [False, True])
def test_intensity_curve_switches(global_curve, class_curve):
    """``augment_class_intensity_curve`` and ``augment_intensity_curve`` (both off by default) put a
    RandClassIntensityCurved, then a RandIntensityCurved, after the spatial augmentations (which move the label the
    class curves read) and before the appearance ones."""
    parser = ConfigParser()
    parser.read_config(TRAIN)
    assert parser["augment_intensity_curve"] is False and parser["augment_class_intensity_curve"] is False
    parser["bundle_root"] = BUNDLE
    parser["augment_intensity_curve"], parser["augment_class_intensity_curve"] = global_curve, class_curve
    names = [type(t).__name__ for t in parser.get_parsed_content("train#preprocessing").transforms]
    expected = ["RandClassIntensityCurved"] * class_curve + ["RandIntensityCurved"] * global_curve
    start = names.index("RandFlipd") + 1
    assert names[start : start + len(expected)] == expected
    assert names[start + len(expected)] == "RandAdjustContrastd"
    assert names.count("RandClassIntensityCurved") + names.count("RandIntensityCurved") == len(expected)
    if class_curve:
        curves = parser.get_parsed_content("train#preprocessing").transforms[start]
        assert curves.label_key == "label"


def test_cardiac_overlay_turns_the_class_intensity_curves_on():
    """The cardiac overlay trains with one random curve per structure (they bridge bSSFP -> T2 on the demo,
    ``docs/benchmarks.md`` result 4); fundus keeps them off."""
    parser = ConfigParser()
    parser.read_config(TRAIN)
    parser.update(ConfigParser.load_config_files(os.path.join(CONFIGS, "cardiac.json")))
    parser["bundle_root"] = BUNDLE
    names = [type(t).__name__ for t in parser.get_parsed_content("train#preprocessing").transforms]
    assert names.count("RandClassIntensityCurved") == 1 and "RandIntensityCurved" not in names


def test_network_in_out_without_text():
    verify_net_in_out(
        net_id="network_def",
        meta_file=os.path.join(CONFIGS, "metadata.json"),
        config_file=TRAIN,
        device="cpu",
        bundle_root=BUNDLE,
    )


def test_training_writes_a_checkpoint_that_loads(trained):
    checkpoint = os.path.join(trained["ckpt_dir"], "model.pt")
    assert os.path.isfile(checkpoint)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert any(k.startswith("aggregation") for k in state)
    assert any(k.startswith("decoder") for k in state)
    assert glob.glob(os.path.join(trained["log_dir"], "events.out.tfevents.*"))


def test_evaluate_on_an_unseen_domain_writes_region_report(trained, tmp_path):
    out = str(tmp_path / "eval_b")
    overrides = {
        **{k: v for k, v in trained.items() if k != "data_dir"},
        "datalist_file": os.path.join(trained["data_dir"], "domain_b", "datalist.json"),
        "test_key": "all",
        "output_dir": out,
    }
    workflow = ConfigWorkflow(config_file=TRAIN + [os.path.join(CONFIGS, "evaluate.json")], workflow_type="eval",
                              **overrides)  # fmt: skip
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    assert report["num_images"] == 5
    assert report["region_names"] == ["optic disc", "optic cup"]
    assert report["regions"]["optic disc"] == [1, 2]
    assert 0.0 <= report["per_image_mean"]["mean_over_regions"]["dice"] <= 1.0
    with open(os.path.join(out, "per_image.csv")) as f:
        assert "domain_b_0000" in f.read()  # rows and overlays are named after the images
    overlays = sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "overlays", "*.png")))
    assert overlays == [f"domain_b_{i:04d}.png" for i in range(5)]


def test_inference_writes_index_masks_at_input_size(trained, tmp_path):
    out = tmp_path / "pred"
    workflow = ConfigWorkflow(
        config_file=[os.path.join(CONFIGS, "inference.json"), os.path.join(CONFIGS, "demo_inference.json")],
        workflow_type="infer",
        bundle_root=BUNDLE,
        dataset_dir=os.path.join(trained["data_dir"], "domain_b"),
        datalist_file=os.path.join(trained["data_dir"], "domain_b", "datalist.json"),
        ckpt_dir=trained["ckpt_dir"],
        output_dir=str(out),
        image_size=SIZE,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    masks = sorted(glob.glob(str(out / "masks" / "*.png")))
    assert len(masks) == 1  # the test list of domain_b
    mask = np.asarray(Image.open(masks[0]))
    assert mask.shape == (SIZE, SIZE)
    assert set(np.unique(mask)) <= {0, 1, 2}
    assert len(glob.glob(str(out / "overlays" / "*.png"))) == 1


def _infer_folder(folder, output_dir, ckpt_dir, **overrides):
    workflow = ConfigWorkflow(
        config_file=[os.path.join(CONFIGS, "inference.json"), os.path.join(CONFIGS, "demo_inference.json")],
        workflow_type="infer",
        bundle_root=BUNDLE,
        dataset_dir=folder,
        ckpt_dir=ckpt_dir,
        output_dir=output_dir,
        image_size=SIZE,
        **overrides,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()


def test_inference_over_a_folder_skips_broken_images_and_keeps_existing_outputs(trained, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted(glob.glob(os.path.join(trained["data_dir"], "domain_b", "images", "*.png")))[:2]:
        with open(path, "rb") as src, open(folder / os.path.basename(path), "wb") as dst:
            dst.write(src.read())
    (folder / "broken.png").write_bytes(b"")
    out = str(tmp_path / "pred")
    _infer_folder(str(folder), out, trained["ckpt_dir"])
    assert len(glob.glob(os.path.join(out, "masks", "*.png"))) == 2
    with open(os.path.join(out, "failures.json")) as f:
        failures = json.load(f)
    assert [os.path.basename(item["item"]) for item in failures["failures"]] == ["broken.png"]
    written = {p: os.path.getmtime(p) for p in glob.glob(os.path.join(out, "**", "*.png"), recursive=True)}
    with pytest.raises(Exception) as info:  # ConfigWorkflow wraps it in a RuntimeError
        _infer_folder(str(folder), out, trained["ckpt_dir"])
    assert "already exists; set overwrite=True" in repr(info.value) + repr(info.value.__cause__)
    assert {p: os.path.getmtime(p) for p in written} == written
    _infer_folder(str(folder), out, trained["ckpt_dir"], overwrite=True)
    assert len(glob.glob(os.path.join(out, "masks", "*.png"))) == 2


def test_torchscript_export_matches_eager(trained, tmp_path):
    ts_path = str(tmp_path / "model.ts")
    overrides = {"bundle_root": BUNDLE, "image_size": SIZE}
    ckpt_export(
        net_id="network_def",
        filepath=ts_path,
        ckpt_file=os.path.join(trained["ckpt_dir"], "model.pt"),
        meta_file=os.path.join(CONFIGS, "metadata.json"),
        config_file=TRAIN,
        use_trace=True,
        input_shape=[1, 3, SIZE, SIZE],
        **overrides,
    )
    scripted = torch.jit.load(ts_path)
    parser = ConfigParser()
    parser.read_config(TRAIN)
    parser.update(overrides)
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(os.path.join(trained["ckpt_dir"], "model.pt"), weights_only=True))
    net.eval()
    image = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(scripted(image), net(image), atol=1e-4, rtol=1e-4)

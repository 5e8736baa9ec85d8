"""The quick start end to end on a small demo set: the v2 data, the aligned tiny CLIP and the v2 knowledge go in
(their configs: tests/bundles/test_config_overlays.py); the summary, both evaluations, the comparison picture and the
predictions come out."""

import json
import os

import torch
from monai_ext.clip import ALIGNED_TINY_CLIP_CHECKPOINT
from PIL import Image
from safetensors.torch import load_file
from script_loader import load_script


def test_quick_start_trains_on_demo_v2_and_compares_reports(tmp_path):
    run_demo = load_script("run_demo")
    out = tmp_path / "demo"
    summary = run_demo.main(output_dir=str(out), max_epochs=1, demo_counts={"n_train": 8, "n_val": 4, "n_test": 4})

    with open(out / "data" / "chest_xray_kinds" / "synthetic.json") as f:
        assert "kinds" in json.load(f)["generator"]
    with open(out / "data" / "counterfactual" / "datalist.json") as f:
        counterfactual = json.load(f)["test"]
    with open(out / "data" / "chest_xray_kinds" / "datalist.json") as f:
        original = {item["name"]: item for item in json.load(f)["test"]}
    assert counterfactual and all(item["text"] != original[item["name"]]["text"] for item in counterfactual)
    for name in ("eval", "eval_counterfactual"):
        with open(out / name / "report.json") as f:
            assert json.load(f)["num_images"] == len(counterfactual)
    assert len(os.listdir(out / "predictions" / "masks")) == 4

    # The frozen CLIP inside the trained weights is the aligned tiny CLIP shipped with the package.
    weights = torch.load(out / "models" / "model.pt", map_location="cpu", weights_only=True)
    aligned = load_file(ALIGNED_TINY_CLIP_CHECKPOINT)
    assert torch.equal(weights["text_encoder.token_embedding.weight"], aligned["token_embedding.weight"].float())
    text = open(summary).read()
    assert "reports naming other lesions" in text and "ratio" in text and "text_guidance.png" in text
    with Image.open(out / "text_guidance.png") as picture:
        with Image.open(out / "eval" / "overlays" / sorted(os.listdir(out / "eval" / "overlays"))[0]) as tile:
            assert picture.width == 2 * tile.width + 4  # pairs: own report, other report

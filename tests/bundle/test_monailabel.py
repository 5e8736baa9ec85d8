"""The MONAI Label pieces that need no MONAI Label: the default prompt and the tokens carried in the image's meta to
the inferer, and ``prepare_app_bundle`` (the app folder with the bundle, its overrides and weights). The real server,
in MONAI Label's own environment, is ``tests/bundle/test_monailabel_server.py``."""

import json
import os
from pathlib import Path

import pytest
import torch
from monai_ext.bundle.monailabel import APP_MAIN, prepare_app_bundle
from monai_ext.inferers import MetaInputInferer
from monai_ext.text.transforms import DefaultTextd, TokensToMetad

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_default_text_tokens_to_meta_and_inferer():
    """The pieces without MONAI Label: default prompt, tokens carried in the image's meta, inferer passes them."""
    assert DefaultTextd(keys="text", default="a")({"image": 1})["text"] == "a"
    assert DefaultTextd(keys="text", default="a")({"text": None})["text"] == "a"
    assert DefaultTextd(keys="text", default="a")({"text": "b"})["text"] == "b"
    assert DefaultTextd(keys="text", default="a")({"text": ""})["text"] == ""
    data = TokensToMetad(keys=["text_tokens", "knowledge_tokens"])(
        {"image": torch.zeros(1, 4, 4), "text_tokens": torch.arange(5), "knowledge_tokens": torch.ones(2, 5)}
    )
    seen = {}

    def network(x, **kwargs):
        seen.update(kwargs)
        return x

    MetaInputInferer()(data["image"][None], network)
    assert seen["text_tokens"].shape == (1, 5) and seen["knowledge_tokens"].shape == (1, 2, 5)
    seen.clear()
    MetaInputInferer()(data["image"][None], network, text_tokens=torch.zeros(1, 5, dtype=torch.long))
    assert seen["text_tokens"].sum() == 0  # the caller's keyword wins (the bundle's evaluator path)


def test_prepare_app_bundle(tmp_path):
    """The bundle lands in <app>/model/<name> with overrides (also nested ids, several layers in order) written into
    its configs, and the cardiac label names into the metadata MONAI Label reads them from."""
    configs = os.path.join(REPO, "bundles", "vlsanet", "configs")
    ckpt = tmp_path / "w.pt"
    torch.save({"a": torch.zeros(1)}, ckpt)
    target = prepare_app_bundle(
        os.path.join(REPO, "bundles", "vlsanet"), str(tmp_path / "app"), checkpoint=str(ckpt),
        inference_overrides=[os.path.join(configs, "cardiac_inference.json"), {"image_size": 64}],
        train_overrides={"max_epochs": 3, "train#dataloader#num_workers": 0},
        metadata_overrides=os.path.join(configs, "cardiac_metadata.json"),
    )  # fmt: skip
    assert target == str(tmp_path / "app" / "model" / "vlsanet")
    assert os.path.isfile(os.path.join(target, "models", "model.pt"))
    train = json.loads(Path(target, "configs", "train.json").read_text())
    assert train["max_epochs"] == 3 and train["train"]["dataloader"]["num_workers"] == 0
    cardiac = json.loads(Path(configs, "cardiac_inference.json").read_text())
    inference = json.loads(Path(target, "configs", "inference.json").read_text())
    assert inference["scale_intensity"] == cardiac["scale_intensity"]
    assert inference["image_size"] == 64 and inference["task"] == "cardiac"
    pred = json.loads(Path(target, "configs", "metadata.json").read_text())["network_data_format"]["outputs"]["pred"]
    prompts = json.loads(Path(configs, "prompts_cardiac.json").read_text())["classes"]
    assert pred["num_channels"] == 4 == inference["num_classes"]
    assert list(pred["channel_def"].values()) == [c["name"] for c in prompts]
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=os.path.join(target, "configs", "metadata.json"),
                    filepath=os.path.join(REPO, "tests", "resources", "meta_schema_20240725.json"))  # fmt: skip
    with pytest.raises(FileExistsError):
        prepare_app_bundle(os.path.join(REPO, "bundles", "vlsanet"), str(tmp_path / "app"))
    assert Path(tmp_path, "app", "main.py").read_text() == Path(APP_MAIN).read_text()  # a new app folder gets the app


def test_prepare_resolves_relative_overrides(tmp_path, monkeypatch):
    """The VLSA-Net README's relative paths (``configs/demo_inference.json``) work from the repository root: a file not
    found from the current folder is looked up in the bundle; an existing main.py (another app) is kept."""
    monkeypatch.chdir(REPO)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("# another app\n")
    target = prepare_app_bundle(
        "bundles/vlsanet", str(tmp_path / "app"), inference_overrides="configs/demo_inference.json",
        train_overrides="configs/demo_inference.json", copy_models=False,
    )  # fmt: skip
    demo = json.loads(Path(REPO, "bundles", "vlsanet", "configs", "demo_inference.json").read_text())
    for config in ("inference.json", "train.json"):
        written = json.loads(Path(target, "configs", config).read_text())
        assert all(written[k] == v for k, v in demo.items() if "#" not in k), config
    assert Path(tmp_path, "app", "main.py").read_text() == "# another app\n"


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ({"inference_overrides": "configs/no_such.json"}, FileNotFoundError, "Override file 'configs/no_such.json'"),
        ({"train_overrides": {"no_such#max_epochs": 1}}, ValueError, "Override 'no_such#max_epochs'"),
        ({"checkpoint": "no_such.pt"}, FileNotFoundError, "Checkpoint file 'no_such.pt'"),
    ],
)
def test_prepare_writes_nothing_when_a_check_fails(tmp_path, arguments, error, message):
    """Every input is checked before the copy: a failure leaves no half-prepared folder, and a rerun needs no
    ``overwrite``."""
    app = tmp_path / "app"
    with pytest.raises(error, match=message):
        prepare_app_bundle(os.path.join(REPO, "bundles", "vlsanet"), str(app), **arguments)
    assert not app.exists()
    prepare_app_bundle(os.path.join(REPO, "bundles", "vlsanet"), str(app), copy_models=False)
    assert sorted(os.listdir(app / "model")) == ["vlsanet"]


def test_prepare_overwrite_replaces_the_whole_folder(tmp_path):
    app = tmp_path / "app"
    first = prepare_app_bundle(os.path.join(REPO, "bundles", "tgcnet"), str(app), copy_models=False)
    Path(first, "stale.txt").write_text("old")
    second = prepare_app_bundle(
        os.path.join(REPO, "bundles", "tgcnet"), str(app), copy_models=False, overwrite=True,
        inference_overrides={"image_size": 64},
    )  # fmt: skip
    assert second == first and not Path(first, "stale.txt").exists()
    assert json.loads(Path(first, "configs", "inference.json").read_text())["image_size"] == 64
    assert sorted(os.listdir(app / "model")) == ["tgcnet"]  # no staging folder left behind

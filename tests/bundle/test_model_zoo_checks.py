"""The checks the MONAI Model Zoo CI runs on a bundle, for every bundle under bundles/: required files, metadata
against the schema (offline copy in tests/resources), network input/output shapes (verify_net_in_out) and TorchScript export
(ckpt_export, then torch.jit.load). Networks use the bundles' demo configs (tiny CLIP, no downloaded weights)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from monai.bundle import verify_metadata, verify_net_in_out

from monai_ext.bundle.export import check_ckpt_export
from monai_ext.bundle.packaging import bundle_requirements, large_file_paths, vendored_files, vendored_requirements
from monai_ext.bundle.parser import bundle_parser
from monai_ext.io import atomic_save

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLES_DIR = os.path.join(REPO, "bundles")
SCHEMA = os.path.join(REPO, "tests", "resources", "meta_schema_20240725.json")
REQUIRED_FILES = ("configs/metadata.json", "configs/inference.json", "docs/README.md", "LICENSE")
# Configs that make each bundle runnable on CPU without downloaded CLIP weights.
DEMO_INFERENCE = "configs/demo_inference.json"

BUNDLES = sorted(
    name
    for name in os.listdir(BUNDLES_DIR)
    if os.path.isdir(os.path.join(BUNDLES_DIR, name)) and os.path.isdir(os.path.join(BUNDLES_DIR, name, "configs"))
)


def bundle_path(name: str, *parts: str) -> str:
    return os.path.join(BUNDLES_DIR, name, *parts)


def inference_configs(name: str) -> list[str]:
    configs = [bundle_path(name, "configs", "inference.json")]
    if os.path.isfile(bundle_path(name, DEMO_INFERENCE)):
        configs.append(bundle_path(name, DEMO_INFERENCE))
    return configs


def test_bundles_are_found():
    assert "tgcnet" in BUNDLES


@pytest.mark.parametrize("bundle", BUNDLES)
def test_required_files_present(bundle):
    missing = [f for f in REQUIRED_FILES if not os.path.isfile(bundle_path(bundle, *f.split("/")))]
    assert not missing, f"{bundle} lacks {missing}"
    for path in large_file_paths(bundle_path(bundle)):  # large files are downloaded, never committed
        assert not os.path.isabs(path) and not path.startswith("..")


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_valid_against_schema(bundle):
    meta_file = bundle_path(bundle, "configs", "metadata.json")
    verify_metadata(meta_file=meta_file, filepath=SCHEMA)
    with open(meta_file) as f:
        meta = json.load(f)
    assert meta["version"] in meta["changelog"], "the current version needs a changelog entry"


# Imported only inside functions of the vendored code, by features no config of the bundle uses; MONAI has no list for
# them (it reads "optional_packages_version" as "required_packages_version"). Anything else must be listed.
HF_TOKENIZER = "monai_ext.text.HFTokenize (a Hugging Face tokenizer from a local folder)"
FEATURE_ONLY = {
    "tgcnet": {"transformers": HF_TOKENIZER},
    "vlsanet": {"transformers": HF_TOKENIZER, "pandas": "monai_ext.data.load_lvit_split (LViT tables, TGC-Net's)"},
}


@pytest.mark.parametrize("bundle", BUNDLES)
def test_bundled_code_needs_only_declared_packages(bundle):
    with open(bundle_path(bundle, "configs", "metadata.json")) as f:
        required = json.load(f).get("required_packages_version", {})
    assert vendored_requirements(vendored_files(bundle_path(bundle)).values(), required)["missing"] == []
    # Everything the archive's configs and vendored code import, and what MONAI needs to run them, is listed.
    found = bundle_requirements(bundle_path(bundle))
    assert found["missing"] == [], found["where"]
    assert set(found["optional"]) <= set(FEATURE_ONLY.get(bundle, {})), found["where"]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_verify_net_in_out(bundle):
    verify_net_in_out(
        net_id="network_def",
        meta_file=bundle_path(bundle, "configs", "metadata.json"),
        config_file=inference_configs(bundle),
        device="cpu",
        bundle_root=bundle_path(bundle),
    )


@pytest.mark.parametrize("bundle", BUNDLES)
def test_ckpt_export_and_torch_jit_load(bundle, tmp_path):
    configs = inference_configs(bundle)
    net = bundle_parser(bundle_path(bundle), configs[1:], base_config=configs[0]).get_parsed_content("network_def")
    checkpoint = str(tmp_path / "model.pt")
    atomic_save(net.state_dict(), checkpoint)
    diff = check_ckpt_export(bundle_path(bundle), configs, checkpoint, str(tmp_path / "model.ts"))
    assert diff <= 1e-4
    extra = {"metadata.json": ""}
    torch.jit.load(str(tmp_path / "model.ts"), _extra_files=extra)
    assert json.loads(extra["metadata.json"])["version"]

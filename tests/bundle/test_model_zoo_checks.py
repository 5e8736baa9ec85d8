"""The checks the MONAI Model Zoo CI runs on a bundle, for every bundle under bundles/: required files, metadata
against the schema (offline copy in tests/resources), the packages the archive needs, and the Zoo's verify_bundle.py
steps and the bundle's Zoo unit test on the archive itself (see ZOO_VERIFY below: TorchScript by scripting, as CI)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch
from monai.bundle import verify_metadata
from monai_ext.bundle.packaging import (
    bundle_requirements,
    large_file_paths,
    package_bundle,
    vendored_files,
    vendored_requirements,
)
from monai_ext.bundle.parser import bundle_parser
from monai_ext.io import atomic_save

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLES_DIR = os.path.join(REPO, "bundles")
SCHEMA = os.path.join(REPO, "tests", "resources", "meta_schema_20240725.json")
REQUIRED_FILES = ("configs/metadata.json", "configs/inference.json", "docs/README.md", "LICENSE")

BUNDLES = sorted(
    name
    for name in os.listdir(BUNDLES_DIR)
    if os.path.isdir(os.path.join(BUNDLES_DIR, name)) and os.path.isdir(os.path.join(BUNDLES_DIR, name, "configs"))
)


def bundle_path(name: str, *parts: str) -> str:
    return os.path.join(BUNDLES_DIR, name, *parts)


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


# The Model Zoo CI on the archives scripts/package_bundle.py writes (with weights, as CI wants models/model.pt), each
# unpacked into a Zoo-like root (<root>/models/<bundle>) and checked in a fresh process from that root, as the Zoo runs
# its scripts: tests/bundle/zoo_verify.py performs the steps of its ci/verify_bundle.py (min and full mode: TorchScript
# by scripting), and the bundle's own Zoo unit test (<bundle>/ci/unit_tests/test_<bundle>.py, what a contributor copies
# into the Zoo's ci/unit_tests/) runs. "tiny": the tests' tiny CLIP as a config overlay (the unit suite); "full": the
# bundles' configs/inference.json alone, ViT-B-16 as the Zoo sees it, a few minutes on CPU: its own step of .ci/run
# (MONAI_TEXTSEG_MODEL_ZOO_FULL=1 and -m model_zoo_full; skipped in the unit suite).
ZOO_VERIFY = os.path.join(REPO, "tests", "bundle", "zoo_verify.py")
FULL_VARIABLE = "MONAI_TEXTSEG_MODEL_ZOO_FULL"
TINY = {"clip_model_name": "monai-textseg-tiny-clip", "clip_pretrained": None, "clip_checkpoint": None}
TINY_EXTRA = {"vlsanet": {"decoder_channels": 16, "num_bases": 8}}
ZOO_CASES = [pytest.param((b, "tiny"), id=f"{b}-tiny") for b in BUNDLES] + [
    pytest.param((b, "full"), id=f"{b}-full", marks=pytest.mark.model_zoo_full) for b in BUNDLES
]


@pytest.fixture(scope="module", params=ZOO_CASES)
def zoo(request, tmp_path_factory):
    """(Zoo-like root, bundle, config overlays): the bundle's archive, packaged with weights of its network (as the
    Zoo's _produce_fake_weights makes them: the state dict of network_def) and unpacked under <root>/models."""
    bundle, size = request.param
    if size == "full" and os.environ.get(FULL_VARIABLE) != "1":
        pytest.skip(
            f"the Model Zoo checks at full size (ViT-B-16) run as their own step of .ci/run ({FULL_VARIABLE}=1)"
        )
    root = tmp_path_factory.mktemp(f"zoo_{bundle}_{size}")
    overlays = []
    if size == "tiny":
        (root / "tiny.json").write_text(json.dumps({**TINY, **TINY_EXTRA.get(bundle, {})}))
        overlays = [str(root / "tiny.json")]
    weights = root / "model.pt"
    atomic_save(bundle_parser(bundle_path(bundle), overlays).get_parsed_content("network_def").state_dict(), weights)
    archive = package_bundle(
        bundle_path(bundle),
        str(root / f"{bundle}.zip"),
        weights=str(weights),
        weights_url=weights.as_uri(),
        weights_configs=overlays,
        check_network=False,  # zoo_verify.py checks that the weights fill the network
    )["archive"]
    with zipfile.ZipFile(archive) as z:
        z.extractall(root / "models")
    return root, bundle, overlays


def run_in(root, *command: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run(
        [sys.executable, *command], cwd=str(root), env=env, capture_output=True, text=True, timeout=timeout
    )


def test_model_zoo_verify_bundle_min_and_full(zoo):
    root, bundle, overlays = zoo
    common = ["--bundle", bundle, "--schema", SCHEMA, "--configs", *overlays]
    run = run_in(root, ZOO_VERIFY, "--mode", "min", *common)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert run.stdout.splitlines()[-1] == "metadata format is verified correctly."
    run = run_in(root, ZOO_VERIFY, "--mode", "full", *common)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    lines = run.stdout.splitlines()
    for step in ("data shape is verified correctly.", "export weights into TorchScript module successfully."):
        assert step in lines
    assert lines[-2].startswith("TorchScript output matches the eager network")
    # The archive's vendored code was verified, not this repository's.
    vendored = root / "models" / bundle / "scripts" / "monai_ext" / "__init__.py"
    assert lines[-1].startswith("bundle code: ") and os.path.samefile(lines[-1].split(": ", 1)[1], vendored)
    # ckpt_export scripted the network: the export keeps the text input (a trace on an image would not).
    exported = torch.jit.load(str(root / "models" / bundle / "models" / "verify_model.ts"))
    assert "text_tokens" in exported.code


def test_model_zoo_unit_test_of_the_bundle(zoo):
    root, bundle, overlays = zoo
    if not overlays:
        pytest.skip("the unit tests are tiny already; the full-size case checks the archive only")
    test_file = root / "models" / bundle / "ci" / "unit_tests" / f"test_{bundle}.py"
    assert test_file.is_file(), "the archive ships the bundle's Model Zoo unit test"
    (root / "ci" / "unit_tests").mkdir(parents=True)
    shutil.copy(test_file, root / "ci" / "unit_tests")
    run = run_in(root, os.path.join("ci", "unit_tests", f"test_{bundle}.py"), "-v")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert "Ran 2 tests" in run.stderr and run.stderr.rstrip().endswith("OK")
    # Both workflows ran, training first (test_order, as the Zoo's runner sorts them).
    started = [run.stderr.find(f"{name} (__main__.") for name in ("test_train_eval_config", "test_infer_config")]
    assert 0 <= started[0] < started[1], run.stderr[-4000:]

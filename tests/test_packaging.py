"""Model Zoo packaging: the archive carries the bundle's code (scripts/monai_ext) and a SHA-256 manifest, leaves the
weights out, and runs `python -m monai.bundle run` from the unpacked folder in a Python that cannot see this
repository (no site .pth files, so not the editable install; no repository path)."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from monai_ext.bundle.packaging import package_bundle, vendored_requirements, verify_bundle_archive
from monai_ext.bundle.parser import bundle_parser
from monai_ext.io import atomic_save

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = os.path.join(REPO, "bundles", "tgcnet")


def hidden_repo_env() -> dict:
    """Environment for ``python -S``: site-packages given explicitly (their .pth files, among them the editable
    install's finder, are not run), nothing from this repository."""
    paths = [p for p in site.getsitepackages() + [site.getusersitepackages()] if os.path.isdir(p)]
    paths = [p for p in paths if not os.path.realpath(p).startswith(os.path.realpath(REPO))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update({"PYTHONPATH": os.pathsep.join(paths), "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "1"})
    return env


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    root = tmp_path_factory.mktemp("packaging")
    bundle = root / "tgcnet"
    shutil.copytree(BUNDLE, bundle, ignore=shutil.ignore_patterns("__pycache__", "models", "runs", "eval"))
    (bundle / "models").mkdir()
    (bundle / "models" / "model.pt").write_bytes(b"weights listed in large_files.yml")
    (bundle / "eval").mkdir()
    (bundle / "eval" / "report.json").write_text("{}")
    result = package_bundle(str(bundle), str(root / "dist" / "tgcnet.zip"))
    return root, result


def test_archive_content_manifest_and_exclusions(packaged):
    root, result = packaged
    names = set(result["files"])
    for required in ("configs/metadata.json", "configs/inference.json", "docs/README.md", "LICENSE", "sha256sums.txt"):
        assert f"tgcnet/{required}" in names
    assert "tgcnet/scripts/__init__.py" in names and "tgcnet/scripts/monai_ext/networks/nets/tgcnet.py" in names
    assert "tgcnet/scripts/monai_ext/networks/configs/monai-textseg-tiny-clip.json" in names  # package data too
    assert "tgcnet/models/model.pt" not in names and "models/model.pt" in result["skipped"]
    assert not any(n.startswith("tgcnet/eval/") or "__pycache__" in n for n in names)
    assert verify_bundle_archive(result["archive"]) == []
    with zipfile.ZipFile(result["archive"]) as z:
        manifest = z.read("tgcnet/sha256sums.txt").decode().splitlines()
        inference = json.loads(z.read("tgcnet/configs/inference.json"))
    assert len(manifest) == len(names) - 1
    assert inference["imports"][0] == "$import scripts" and "$import monai_ext" in inference["imports"]
    # Deterministic: packaging again gives the same bytes; a tampered file is caught.
    again = package_bundle(os.path.join(root, "tgcnet"), str(root / "dist" / "again.zip"))
    assert open(again["archive"], "rb").read() == open(result["archive"], "rb").read()
    tampered = root / "dist" / "tampered.zip"
    with zipfile.ZipFile(result["archive"]) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data + b" " if item.filename.endswith("LICENSE") else data)
    assert any("LICENSE" in p for p in verify_bundle_archive(str(tampered)))
    with pytest.raises(FileExistsError):
        package_bundle(os.path.join(root, "tgcnet"), result["archive"])


def test_bundled_code_needs_only_the_declared_packages():
    with open(os.path.join(BUNDLE, "configs", "metadata.json")) as f:
        required = json.load(f)["required_packages_version"]
    assert vendored_requirements(["monai_ext"], required)["missing"] == []
    assert "open_clip" in vendored_requirements(["monai_ext"], {})["missing"]


def test_unpacked_bundle_runs_inference_without_this_repository(packaged):
    root, result = packaged
    unpacked = root / "unpacked"
    with zipfile.ZipFile(result["archive"]) as z:
        z.extractall(unpacked)
    bundle = unpacked / "tgcnet"
    env = hidden_repo_env()

    # Without the bundle's scripts, monai_ext cannot be imported in this environment.
    probe = subprocess.run(
        [sys.executable, "-S", "-c", "import monai_ext"], cwd=str(unpacked), env=env, capture_output=True, text=True
    )
    assert probe.returncode != 0 and "No module named 'monai_ext'" in probe.stderr

    # Weights the user would download: a tiny-CLIP TGC-Net saved here.
    net = bundle_parser(BUNDLE, ["configs/demo_inference.json"]).get_parsed_content("network_def")
    atomic_save({"model": net.state_dict()}, str(bundle / "models" / "model.pt"))
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (180, 200), dtype=np.uint8)).save(images / "case1.png")
    check = root / "where.json"
    check.write_text(json.dumps({"finalize": ["$print('MONAI_EXT_FILE=' + monai_ext.__file__)"]}))

    command = [
        sys.executable,
        "-S",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        json.dumps(["configs/inference.json", "configs/demo_inference.json", str(check)]),
        "--dataset_dir",
        str(images),
        "--text",
        "Lower right lung infection.",
        "--output_dir",
        str(root / "pred"),
    ]
    run = subprocess.run(command, cwd=str(bundle), env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    used = [line.split("=", 1)[1] for line in run.stdout.splitlines() if line.startswith("MONAI_EXT_FILE=")]
    assert used and os.path.realpath(used[0]) == os.path.realpath(bundle / "scripts" / "monai_ext" / "__init__.py")
    masks = os.listdir(root / "pred" / "masks")
    assert len(masks) == 1
    assert np.asarray(Image.open(root / "pred" / "masks" / masks[0])).shape == (180, 200)
    assert "not from this bundle's copy" not in run.stdout + run.stderr

    # Started from another folder, "$import scripts" fails (silently, in MONAI) and an installed monai_ext would be
    # used: the run says so. Here the repository's copy stands in for an installed one.
    elsewhere = dict(env, PYTHONPATH=os.pathsep.join([REPO, env["PYTHONPATH"]]))
    absolute = [
        os.path.join(bundle, "configs", "inference.json"),
        os.path.join(bundle, "configs", "demo_inference.json"),
    ]
    command = [sys.executable, "-S", "-m", "monai.bundle", "run", "--config_file", json.dumps(absolute),
               "--bundle_root", str(bundle), "--dataset_dir", str(images), "--text", "Lower right lung infection.",
               "--output_dir", str(root / "pred_elsewhere")]  # fmt: skip
    run = subprocess.run(command, cwd=str(root), env=elsewhere, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"not from this bundle's copy in {bundle / 'scripts'}" in run.stdout + run.stderr

"""Model Zoo packaging: the archive carries the code its configs import (scripts/monai_ext: the closure of the names
they reference, nothing else) and a SHA-256 manifest, leaves the weights out unless given (then models/model.pt with
its URL and SHA-256 in large_files.yml, which MONAI's download_large_files accepts), and runs `python -m monai.bundle
run` from the unpacked folder in a Python that cannot see this repository (no site .pth files, so not the editable
install; no repository path); started elsewhere it says so in one line. The metadata lists what the archive
imports."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
import yaml
from monai.apps.utils import HashCheckError
from monai.bundle import download_large_files
from monai_ext.bundle.packaging import (
    bundle_requirements,
    check_weights_url,
    config_modules,
    config_references,
    package_bundle,
    vendored_files,
    vendored_requirements,
    verify_bundle_archive,
)
from monai_ext.bundle.parser import bundle_parser
from monai_ext.checkpoint import CheckpointError
from monai_ext.io import atomic_save
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLE = os.path.join(REPO, "bundles", "tgcnet")
DEMO_INFERENCE = "configs/demo_inference.json"
GUARD_MESSAGE = "'monai_ext' not found: this bundle carries its own copy in <bundle>/scripts"


def hidden_repo_env() -> dict:
    """Environment for ``python -S``: site-packages given explicitly (their .pth files, among them the editable
    install's finder, are not run), none that holds this repository's package. Where an environment lives does not
    matter (``.venv`` inside the checkout, ``<repo>-venv`` beside it): a folder is dropped for what it holds."""
    paths = [p for p in site.getsitepackages() + [site.getusersitepackages()] if os.path.isdir(p)]
    paths = [p for p in paths if not os.path.exists(os.path.join(p, "monai_ext"))]
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


@pytest.fixture(scope="module")
def unpacked(packaged):
    """The unpacked archive's bundle folder."""
    root, result = packaged
    with zipfile.ZipFile(result["archive"]) as z:
        z.extractall(root / "unpacked")
    return root / "unpacked" / "tgcnet"


def archive_code(names) -> set[str]:
    """The vendored files of an archive's names (below <bundle>/scripts/, without the generated __init__.py)."""
    return {n.split("/scripts/", 1)[1] for n in names if "/scripts/" in n and not n.endswith("/scripts/__init__.py")}


def test_archive_content_manifest_and_exclusions(packaged):
    root, result = packaged
    names = set(result["files"])
    for required in ("configs/metadata.json", "configs/inference.json", "docs/README.md", "LICENSE", "sha256sums.txt"):
        assert f"tgcnet/{required}" in names
    assert "tgcnet/scripts/__init__.py" in names and "tgcnet/scripts/monai_ext/networks/nets/tgcnet.py" in names
    assert "tgcnet/scripts/monai_ext/clip_configs/monai-textseg-tiny-clip.json" in names  # package data too
    assert "tgcnet/models/model.pt" not in names and "models/model.pt" in result["skipped"]
    assert not any(n.startswith("tgcnet/eval/") or "__pycache__" in n for n in names)
    # The demo overlays that load the package's aligned tiny CLIP stay out: the archive does not vendor those weights.
    assert os.path.isfile(os.path.join(root, "tgcnet", "configs", "demo_kinds.json"))
    assert "tgcnet/configs/demo.json" in names and not any("configs/demo_kinds" in n for n in names)
    assert verify_bundle_archive(result["archive"]) == []
    with zipfile.ZipFile(result["archive"]) as z:
        manifest = z.read("tgcnet/sha256sums.txt").decode().splitlines()
        inference = json.loads(z.read("tgcnet/configs/inference.json"))
    assert len(manifest) == len(names) - 1
    assert inference["imports"][0] == "$import scripts" and "$import monai_ext" in inference["imports"]
    assert inference["imports"][1] == "$import monai_ext.bundled_code"  # for the check that starts initialize
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


def test_archive_vendors_what_its_configs_import_and_nothing_else(packaged, unpacked):
    root, result = packaged
    vendored = archive_code(result["files"])
    assert vendored == set(vendored_files(os.path.join(root, "tgcnet")))
    assert "monai_ext/networks/nets/tgcnet.py" in vendored and "monai_ext/bundled_code.py" in vendored
    assert "monai_ext/demo/chest_xray.py" in vendored  # configs/demo.json makes its data with it
    assert not any(p.startswith(("monai_ext/apps/", "monai_ext/bundle/")) for p in vendored)  # tooling stays out
    assert "monai_ext/clip_configs/monai-textseg-tiny-clip.json" in vendored  # data that clip.py reads

    # What Python actually imports for the names the archive's configs reference, in an environment that sees only
    # the archive: every name resolves (nothing is missing) and every vendored module is imported (nothing extra).
    names = set()
    with zipfile.ZipFile(result["archive"]) as z:
        for entry in z.namelist():
            if entry.startswith("tgcnet/configs/") and entry.endswith(".json"):
                names |= config_references(json.loads(z.read(entry)))
    assert {"monai_ext.networks.nets.TGCNet", "monai_ext.bundled_code.check_bundled_code"} <= names
    probe = (
        "import json, pydoc, sys\n"
        "import scripts\n"
        "missing = [n for n in json.loads(sys.argv[1]) if pydoc.locate(n) is None]\n"
        "assert not missing, missing\n"
        "print(json.dumps([m.__file__ for n, m in sys.modules.items() if n.split('.')[0] == 'monai_ext']))\n"
    )
    run = subprocess.run(
        [sys.executable, "-S", "-c", probe, json.dumps(sorted(names))],
        cwd=str(unpacked),
        env=hidden_repo_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    scripts = os.path.realpath(unpacked / "scripts")
    imported = {os.path.relpath(os.path.realpath(f), scripts).replace(os.sep, "/") for f in json.loads(run.stdout)}
    assert imported == {p for p in vendored if p.endswith(".py")}


def test_without_demo_configs_the_demo_generators_stay_out(tmp_path):
    output = tmp_path / "tgcnet.zip"
    command = [sys.executable, os.path.join(REPO, "scripts", "package_bundle.py"), "--bundle_dir", BUNDLE,
               "--output", str(output), "--include_demo", "False"]  # fmt: skip
    run = subprocess.run(command, cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "configs/demo.json" in run.stdout  # listed as left out
    with zipfile.ZipFile(output) as z:
        names = z.namelist()
    assert "tgcnet/configs/inference.json" in names
    assert not any(n.startswith("tgcnet/configs/demo") for n in names)
    vendored = archive_code(names)
    assert vendored == set(vendored_files(BUNDLE, include_demo=False))
    assert not any(p.startswith("monai_ext/demo/") for p in vendored)
    assert "monai_ext/networks/nets/tgcnet.py" in vendored
    # Package data named by clip.py: the configurations go in, the shipped demo weights do not (large_files.yml).
    assert "monai_ext/clip_configs/monai-textseg-tiny-clip.json" in vendored
    assert not any(p.startswith("monai_ext/clip_weights/") for p in vendored)
    assert verify_bundle_archive(str(output)) == []


def test_config_references_are_the_code_names_of_targets_and_expressions():
    config = {
        "imports": ["$import monai_ext.flags", "$from monai_ext.text import DefaultTextd", "$import numpy"],
        "amp": "$monai_ext.flags.ensure_flag(@train#amp, 'amp') and @device.type == 'cuda'",
        "net": {"_target_": "monai_ext.networks.nets.TGCNet", "text": "$[monai_ext.io.image_stem(p) for p in @x]"},
        "loss": {"_target_": "DiceLoss"},
        "description": "synthetic data made by monai_ext.demo",  # text, not code
    }
    assert config_references(config) == {
        "monai_ext.flags",
        "monai_ext.text.DefaultTextd",
        "monai_ext.flags.ensure_flag",
        "monai_ext.networks.nets.TGCNet",
        "monai_ext.io.image_stem",
    }
    with pytest.raises(ValueError, match="not Python"):
        config_references({"broken": "$monai_ext.flags.ensure_flag(@amp"})


def test_vendored_files_follow_yaml_configs_too(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "metadata.json").write_text("{}")
    (tmp_path / "configs" / "train.yaml").write_text("loss:\n  _target_: monai_ext.losses.DiceBCELoss\n")
    vendored = vendored_files(str(tmp_path))
    assert {"monai_ext/__init__.py", "monai_ext/losses/__init__.py", "monai_ext/losses/dice_bce.py"} <= set(vendored)
    assert not any(p.startswith(("monai_ext/handlers/", "monai_ext/bundle/", "monai_ext/demo/")) for p in vendored)
    assert all(os.path.isfile(source) for source in vendored.values())


def test_bundled_code_needs_only_the_declared_packages():
    with open(os.path.join(BUNDLE, "configs", "metadata.json")) as f:
        required = json.load(f)["required_packages_version"]
    code = vendored_files(BUNDLE).values()
    assert vendored_requirements(code, required)["missing"] == []
    assert "open_clip" in vendored_requirements(code, {})["missing"]


def test_hidden_repo_env_keeps_virtual_environments_inside_and_beside_the_repository(monkeypatch, tmp_path):
    repo = tmp_path / "monai-textseg"
    beside, inside = tmp_path / "monai-textseg-venv" / "site-packages", repo / ".venv" / "site-packages"
    installed = tmp_path / "other-venv" / "site-packages"  # a regular (non-editable) install of the package
    for path in (beside, inside, installed / "monai_ext"):
        path.mkdir(parents=True)
    monkeypatch.setattr(site, "getsitepackages", lambda: [str(beside), str(inside), str(installed)])
    monkeypatch.setattr(site, "getusersitepackages", lambda: str(tmp_path / "missing"))
    assert hidden_repo_env()["PYTHONPATH"].split(os.pathsep) == [str(beside), str(inside)]


def test_unpacked_bundle_runs_inference_without_this_repository(packaged, unpacked):
    root, result = packaged
    bundle = unpacked
    env = hidden_repo_env()

    # Without the bundle's scripts, monai_ext cannot be imported in this environment.
    probe = subprocess.run(
        [sys.executable, "-S", "-c", "import monai_ext"],
        cwd=str(bundle.parent),
        env=env,
        capture_output=True,
        text=True,
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


def bundle_command(configs, *args) -> list[str]:
    return [sys.executable, "-S", "-m", "monai.bundle", "run", "--config_file", json.dumps(configs), *args]


def test_started_elsewhere_without_monai_ext_the_archive_says_so_in_one_line(unpacked, tmp_path):
    # Another working folder, no monai_ext anywhere: "$import scripts" fails (MONAI skips it), so does every import
    # of monai_ext. The guard that starts initialize needs only the standard library and stops the run with one line.
    configs = [str(unpacked / "configs" / "inference.json")]
    for extra in ([], ["--bundle_root", str(unpacked)]):
        command = bundle_command(configs, "--dataset_dir", str(tmp_path / "images"), *extra)
        run = subprocess.run(command, cwd=str(tmp_path), env=hidden_repo_env(), capture_output=True, text=True)
        assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
        last = run.stderr.strip().splitlines()[-1]
        assert last.startswith(GUARD_MESSAGE) and "Traceback" not in run.stderr, run.stderr[-3000:]
        assert "No module named" not in run.stderr
        assert last.endswith(f"(bundle_root is {unpacked if extra else tmp_path}).")


@pytest.fixture(scope="module")
def demo_weights(tmp_path_factory):
    """Trained weights as a user would ship them (the state dict, as train.json's CheckpointSaver writes it): a
    tiny-CLIP TGC-Net (configs/demo_inference.json) saved here."""
    path = tmp_path_factory.mktemp("weights") / "tgcnet_demo.pt"
    net = bundle_parser(BUNDLE, [DEMO_INFERENCE]).get_parsed_content("network_def")
    atomic_save(net.state_dict(), str(path))
    return path


def test_weights_go_in_as_models_model_pt_with_their_url_and_sha256(demo_weights, tmp_path):
    url = demo_weights.as_uri()
    result = package_bundle(
        BUNDLE,
        str(tmp_path / "tgcnet.zip"),
        weights=str(demo_weights),
        weights_url=url,
        weights_configs=[DEMO_INFERENCE],
    )
    digest = hashlib.sha256(demo_weights.read_bytes()).hexdigest()
    entry = {"path": "models/model.pt", "url": url, "hash_val": digest, "hash_type": "sha256"}
    assert result["large_files"] == [entry]
    with zipfile.ZipFile(result["archive"]) as z:
        assert z.read("tgcnet/models/model.pt") == demo_weights.read_bytes()
        assert yaml.safe_load(z.read("tgcnet/large_files.yml")) == {"large_files": [entry]}
        assert f"{digest}  models/model.pt" in z.read("tgcnet/sha256sums.txt").decode().splitlines()
        z.extractall(tmp_path / "unpacked")
    assert verify_bundle_archive(result["archive"]) == []
    bundle = tmp_path / "unpacked" / "tgcnet"

    # MONAI's download_large_files (what the Model Zoo's CI runs first): the shipped file passes the hash check; a
    # missing one is downloaded from the URL (file:// here) and checked; a changed one is refused.
    weights = bundle / "models" / "model.pt"
    download_large_files(bundle_path=str(bundle))
    weights.unlink()
    download_large_files(bundle_path=str(bundle))
    assert weights.read_bytes() == demo_weights.read_bytes()
    weights.write_bytes(demo_weights.read_bytes() + b"changed")
    with pytest.raises(HashCheckError):
        download_large_files(bundle_path=str(bundle))
    weights.write_bytes(demo_weights.read_bytes())

    # The shipped weights run, started from another folder with the bundle folder on PYTHONPATH (what the guard's
    # message advises): inference loads models/model.pt with the archive's own code.
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 80), dtype=np.uint8)).save(images / "case1.png")
    env = hidden_repo_env()
    env["PYTHONPATH"] = os.pathsep.join([str(bundle), env["PYTHONPATH"]])
    configs = [str(bundle / "configs" / "inference.json"), str(bundle / DEMO_INFERENCE)]
    command = bundle_command(configs, "--bundle_root", str(bundle), "--dataset_dir", str(images), "--text",
                             "Lower right lung infection.", "--output_dir", str(tmp_path / "pred"))  # fmt: skip
    run = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert len(os.listdir(tmp_path / "pred" / "masks")) == 1
    assert "not from this bundle's copy" not in run.stdout + run.stderr


def test_without_weights_large_files_lists_none_and_monai_accepts_it(packaged, tmp_path):
    root, result = packaged
    assert not any(n.startswith("tgcnet/models/") for n in result["files"]) and result["large_files"] == []
    with zipfile.ZipFile(result["archive"]) as z:
        text = z.read("tgcnet/large_files.yml").decode()
        z.extract("tgcnet/large_files.yml", tmp_path)
    assert yaml.safe_load(text) == {"large_files": []} and 'url: ""' not in text
    download_large_files(bundle_path=str(tmp_path / "tgcnet"))  # nothing to download, no error
    assert os.listdir(tmp_path / "tgcnet") == ["large_files.yml"]


@pytest.mark.parametrize(
    "url, problem",
    [
        ("", "is empty"),
        ("   ", "is empty"),
        (None, "must be a URL"),
        (123, "must be a URL"),
        ("models/model.pt", "scheme"),
        ("ftp://example.org/model.pt", "scheme"),
        ("https://", "has no host"),
        ("https://example.org/my model.pt", "white space"),
        ("file://", "has no path"),
    ],
)
def test_weights_url_must_be_http_or_file(url, problem):
    with pytest.raises(ValueError, match=problem):
        check_weights_url(url)


def test_unusable_weights_or_urls_are_refused_before_anything_is_written(demo_weights, tmp_path):
    output = tmp_path / "tgcnet.zip"
    url = demo_weights.as_uri()

    def package(weights, weights_url=url, **kwargs):
        return package_bundle(
            BUNDLE, str(output), weights=weights, weights_url=weights_url, weights_configs=[DEMO_INFERENCE], **kwargs
        )

    with pytest.raises(FileNotFoundError, match="does not exist"):
        package(str(tmp_path / "missing.pt"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        package(str(garbage))
    other = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), other)
    with pytest.raises(CheckpointError, match="does not fit TGCNet.*another network"):
        package(str(other))
    # The right weights under a key: the Zoo's ckpt_export (key_in_ckpt "") would find none of them.
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"model": torch.load(demo_weights, weights_only=True), "epoch": 3}, wrapped)
    with pytest.raises(CheckpointError, match=r"under a key of a checkpoint dict \(top-level keys: epoch, model\)"):
        package(str(wrapped), check_network=False)
    with pytest.raises(ValueError, match="is empty"):
        package(str(demo_weights), "")
    with pytest.raises(ValueError, match="go together"):
        package(str(demo_weights), None)
    with pytest.raises(ValueError, match="go together"):
        package_bundle(BUNDLE, str(output), weights_url=url)
    # Without the network check only the file is read: another network's weights pass, a garbage file does not.
    package(str(other), check_network=False)
    assert output.exists()
    output.unlink()
    with pytest.raises(CheckpointError):
        package(str(garbage), check_network=False)
    assert not output.exists()

    # The command line says what is wrong in one line, without a traceback.
    command = [sys.executable, os.path.join(REPO, "scripts", "package_bundle.py"), "--bundle_dir", BUNDLE,
               "--output", str(output), "--weights", str(tmp_path / "missing.pt"), "--weights_url", url]  # fmt: skip
    run = subprocess.run(command, cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.stderr.strip().splitlines()[-1].startswith("package_bundle: Checkpoint file")
    assert not output.exists()


def test_config_modules_are_what_configs_import_name_or_build():
    config = {
        "imports": ["$import glob", "$from PIL import Image"],
        "writer": {"_target_": "TensorBoardStatsHandler"},
        "bar": {"_target_": "ignite.handlers.ProgressBar"},
        "table": "$yaml.safe_load(open(@path))",
        "shape": "$[x.shape for x in @images]",  # x: a local name, not a module
        "net": {"_target_": "monai_ext.networks.nets.TGCNet"},
    }
    assert config_modules(config) == {"glob", "PIL", "tensorboard", "ignite", "tqdm", "yaml", "monai_ext"}


def test_bundle_requirements_find_what_the_metadata_lacks():
    with open(os.path.join(BUNDLE, "configs", "metadata.json")) as f:
        metadata = json.load(f)
    assert bundle_requirements(BUNDLE)["missing"] == []
    required = metadata["required_packages_version"]
    for package, module, needed_by in [
        ("fire", "fire", "python -m monai.bundle"),  # how the configs are run
        ("pyyaml", "yaml", "large_files.yml"),
        ("tensorboard", "tensorboard", "configs/train.json"),  # TensorBoardStatsHandler
        ("pytorch-ignite", "ignite", "configs/inference.json"),  # "$import ignite", and the vendored code
        ("open_clip_torch", "open_clip", "scripts/monai_ext/clip.py"),
        ("pillow", "PIL", "scripts/monai_ext/"),
    ]:
        less = dict(metadata, required_packages_version={k: v for k, v in required.items() if k != package})
        found = bundle_requirements(BUNDLE, metadata=less)
        assert module in found["missing"], (package, found)
        assert any(needed_by in where for where in found["where"][module]), found["where"][module]
    # Imports inside functions (features) are reported, not required.
    less = dict(metadata, required_packages_version={k: v for k, v in required.items() if k != "safetensors"})
    assert "safetensors" in bundle_requirements(BUNDLE, metadata=less)["optional"]

"""Both bundles in MONAI Label's ``monaibundle`` app: ``BundleTrainTask`` trains them on a ``LocalDatastore`` and
``BundleInferTask`` segments an image; for TGC-Net the request's ``text`` steers the prediction.

MONAI Label pins many packages, so it lives in its own virtual environment (``--system-site-packages``, so torch,
MONAI and ``monai_ext`` come from this environment), made once and cached under
``~/.cache/monai-textseg/monailabel-venv`` (``MONAI_TEXTSEG_MONAILABEL_VENV`` overrides the folder). The MONAI Label
code runs in a subprocess with that venv's Python; its results come back as JSON. The test is skipped only when pip
cannot reach the package index; any other install failure fails it.
"""

import fcntl
import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from monai_ext.bundle.monailabel import prepare_app_bundle
from monai_ext.demo import make_chest_xray_dataset, make_fundus_dataset
from monai_ext.inferers import MetaInputInferer
from monai_ext.text.transforms import DefaultTextd, TokensToMetad

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MONAILABEL = "monailabel==0.8.5"
# what BundleInferTask, BundleTrainTask and LocalDatastore import beyond this environment (found by importing them)
EXTRA_PACKAGES = ["expiring_dict", "pynrrd", "scikit-image", "shapely", "watchdog"]
NETWORK_ERRORS = (
    "connection error",
    "Could not fetch URL",
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ConnectTimeout",
    "ReadTimeout",
    "ProxyError",
    "Max retries exceeded",
)
IMPORT_CHECK = (
    "import monailabel.tasks.infer.bundle, monailabel.tasks.train.bundle, monailabel.datastore.local; "
    "import monai_ext.inferers, monai_ext.text"
)
SIZE = 64
TINY = {"clip_model_name": "monai-textseg-tiny-clip", "clip_pretrained": None, "clip_checkpoint": None, "amp": False}

DRIVER = r"""
import json, os, sys, time, logging
import numpy as np
import torch
from PIL import Image

logging.basicConfig(level=logging.WARNING)
from monailabel.datastore.local import LocalDatastore
from monailabel.tasks.infer.basic_infer import CallBackTypes
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.tasks.train.bundle import BundleTrainTask

cfg = json.loads(sys.argv[1])
bundle, studies, name = cfg["bundle"], cfg["studies"], cfg["name"]
out = {}

# train: the datastore's labelled images, split by MONAI Label (val_split), a model.pt already there is loaded first
datastore = LocalDatastore(studies, extensions=("*.png",))
out["datalist_size"] = len(datastore.datalist())
trainer = BundleTrainTask(bundle, {})
out["train_valid"] = trainer.is_valid()
model_pt = os.path.join(bundle, "models", "model.pt")
before = os.path.getmtime(model_pt) if os.path.exists(model_pt) else None
start = time.time()
trainer({"model": name, "max_epochs": 1, "val_split": 0.5, "device": "cpu", "multi_gpu": False}, datastore)
out["train_seconds"] = time.time() - start
out["model_written"] = os.path.exists(model_pt) and os.path.getmtime(model_pt) != before

# infer
infer = BundleInferTask(bundle, {})
out["infer_valid"] = infer.is_valid()
out["labels"] = infer.labels
out["dimension"] = infer.dimension
out["config"] = {k: v for k, v in infer.config().items() if isinstance(v, (str, int, float, bool, list))}
results = []
for request in cfg["requests"]:
    logits = {}
    def keep(data):
        logits["pred"] = torch.as_tensor(data["pred"]).detach().float().cpu().clone()
        return data
    start = time.time()
    request = {"image": cfg["image"], "device": "cpu", **request}
    label_file, params = infer(request, callbacks={CallBackTypes.INFERER: keep})
    mask = np.asarray(Image.open(label_file)) if label_file.endswith(".png") else None
    results.append({
        "request": request,
        "label_file": label_file,
        "mask_shape": list(mask.shape),
        "mask_values": sorted(int(v) for v in np.unique(mask)),
        "logits_shape": list(logits["pred"].shape),
        "logits": logits["pred"].flatten().tolist(),
        "label_names": params.get("label_names"),
        "seconds": time.time() - start,
    })
out["results"] = results
with open(cfg["output"], "w") as f:
    json.dump(out, f)
"""


def _pip_failed(python: Path, log: str, what: str, env):
    """Skip when pip could not reach the package index, fail otherwise. pip's quiet output hides the connection
    errors when it does not retry, so a verbose ``pip download`` of MONAI Label tells."""
    if not any(s in log for s in NETWORK_ERRORS):
        with tempfile.TemporaryDirectory() as tmp:
            probe = subprocess.run(
                [str(python), "-m", "pip", "download", "-vvv", "--no-deps", "-d", tmp, MONAILABEL],
                capture_output=True, text=True, env=env,
            )  # fmt: skip
        if probe.returncode == 0:  # the index answers: the failure is not about reaching it
            pytest.fail(f"installing {what} failed:\n{log[-4000:]}")
        log += probe.stdout + probe.stderr
    if any(s in log for s in NETWORK_ERRORS):
        pytest.skip(f"pip cannot reach the package index to install {what}: " + next(
            line for line in log.splitlines() if any(s in line for s in NETWORK_ERRORS)
        ))  # fmt: skip
    pytest.fail(f"installing {what} failed:\n{log[-4000:]}")


def _link_this_environment(python: Path):
    """Make the venv see this interpreter's packages (also when pytest itself runs in a venv, whose packages
    ``--system-site-packages`` would not reach): a .pth that adds our site folders, .pth files (editable installs)
    included, after the venv's own."""
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    dirs = [d for d in [*site.getsitepackages(), site.getusersitepackages()] if os.path.isdir(d)]
    line = "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in dirs) + "\n"
    Path(purelib, "_monai_textseg_parent_env.pth").write_text(line)


@pytest.fixture(scope="session")
def monailabel_python():
    """Python of a cached venv with MONAI Label; creates it on first use and reports the install time."""
    default = Path.home() / ".cache" / "monai-textseg" / "monailabel-venv"
    venv = Path(os.environ.get("MONAI_TEXTSEG_MONAILABEL_VENV", default))
    python = venv / "bin" / "python"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{venv}.lock", "w") as lock:  # one session builds it, concurrent ones wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists():
            _link_this_environment(python)
            if subprocess.run([str(python), "-c", IMPORT_CHECK], capture_output=True, env=env).returncode == 0:
                return str(python)
        start = time.time()
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
        _link_this_environment(python)
        # monailabel itself without its pins (they would replace this environment's torch/MONAI/pydicom), then what
        # the two tasks and LocalDatastore import
        for args, what in (
            (["--no-deps", MONAILABEL], MONAILABEL),
            (EXTRA_PACKAGES, " ".join(EXTRA_PACKAGES)),
        ):
            command = [str(python), "-m", "pip", "install", "--progress-bar", "off", *args]
            proc = subprocess.run(command, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                log = proc.stdout + proc.stderr
                try:
                    _pip_failed(python, log, what, env)
                finally:
                    shutil.rmtree(venv, ignore_errors=True)
        check = subprocess.run([str(python), "-c", IMPORT_CHECK], capture_output=True, text=True, env=env)
        assert check.returncode == 0, f"MONAI Label installed in {venv} but does not import:\n{check.stderr[-4000:]}"
        print(f"\nMONAI Label venv installed in {time.time() - start:.1f} s: {venv}")
        return str(python)


def _studies(root: Path, pairs, reports=None):
    """MONAI Label LocalDatastore layout: <studies>/<name>.png and the final label <studies>/labels/final/<name>.png;
    ``reports[i]``, when given and not None, is written beside image i as <studies>/<name>.txt."""
    studies = root / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    for index, (image, label) in enumerate(pairs):
        shutil.copyfile(image, studies / f"case_{index:03d}.png")
        shutil.copyfile(label, studies / "labels" / "final" / f"case_{index:03d}.png")
        if reports and reports[index] is not None:
            (studies / f"case_{index:03d}.txt").write_text(reports[index], encoding="utf-8")
    return studies


def _drive(python, root: Path, bundle: str, name: str, studies: Path, image: str, requests):
    output = root / f"{name}_result.json"
    cfg = {"bundle": bundle, "studies": str(studies), "name": name, "image": image, "requests": requests}
    cfg["output"] = str(output)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONPATH": REPO}
    command = [python, "-c", DRIVER, json.dumps(cfg)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=str(root), timeout=600)
    assert proc.returncode == 0, f"MONAI Label driver failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return json.loads(output.read_text())


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


def test_tgcnet_in_monailabel(monailabel_python, tmp_path):
    data_dir = tmp_path / "data"
    make_chest_xray_dataset(str(data_dir), n_train=6, n_val=0, n_test=0, image_size=SIZE, seed=3)
    datalist = json.loads((data_dir / "datalist.json").read_text())["training"]
    pairs = [(data_dir / d["image"], data_dir / d["label"]) for d in datalist]
    # reports beside the studies reach BundleTrainTask's items (image and label only) through SidecarReportd; the
    # image used for inference below has none, so a request without text gets the default prompt
    reports = [None] + [d["text"] for d in datalist[1:]]
    studies = _studies(tmp_path, pairs, reports)
    overrides = {**TINY, "image_size": SIZE}
    train = {**overrides, "batch_size": 2, "num_workers": 0}
    bundle = prepare_app_bundle(
        os.path.join(REPO, "bundles", "tgcnet"), str(tmp_path / "app"), name="tgcnet",
        inference_overrides=overrides, train_overrides=train, copy_models=False,
    )  # fmt: skip
    prompt = json.loads(Path(bundle, "configs", "inference.json").read_text())["default_prompt"]
    image = str(studies / "case_000.png")
    requests = [
        {"text": "Infection in the lower left lung."},
        {"text": "Bilateral pulmonary infection, two infected areas, upper left lung and upper right lung."},
        {},
        {"text": prompt},
    ]
    out = _drive(monailabel_python, tmp_path, bundle, "tgcnet", studies, image, requests)
    print(f"\nTGC-Net: train {out['train_seconds']:.1f} s; infer {[round(r['seconds'], 2) for r in out['results']]} s")
    assert out["datalist_size"] == 6 and out["train_valid"] and out["model_written"] and out["infer_valid"]
    assert out["dimension"] == 2
    assert out["config"]["text"] == prompt  # shown as an editable option by MONAI Label clients (displayable_configs)
    shape = list(np.asarray(Image.open(image)).shape)
    for result in out["results"]:
        assert result["mask_shape"] == shape, result
        assert set(result["mask_values"]) <= {0, 1}, result
        assert result["logits_shape"] == [1, SIZE, SIZE]
    for result in out["results"]:  # the file holds the prediction in the image's orientation (rows, columns)
        logits = np.asarray(result["logits"]).reshape(SIZE, SIZE)  # MONAI's (x, y) order
        mask = np.asarray(Image.open(result["label_file"]))
        np.testing.assert_array_equal(mask, (logits > 0).T.astype(np.uint8))
    lower_left, bilateral, no_text, default = (np.asarray(r["logits"]) for r in out["results"])
    assert not np.allclose(lower_left, bilateral), "a different report must change the prediction"
    np.testing.assert_allclose(no_text, default, atol=1e-5)  # no text in the request: the default prompt
    assert not np.allclose(no_text, lower_left)


def test_vlsanet_in_monailabel(monailabel_python, tmp_path):
    data_dir = tmp_path / "data"
    make_fundus_dataset(str(data_dir), n_per_domain=6, image_size=SIZE, seed=3, domains=["domain_a"], test_fraction=0.0)
    domain = data_dir / "domain_a"
    datalist = json.loads((domain / "datalist.json").read_text())["training"]
    pairs = [(domain / d["image"], domain / d["label"]) for d in datalist]
    studies = _studies(tmp_path, pairs)
    overrides = {**TINY, "image_size": SIZE, "decoder_channels": 16, "num_bases": 8}
    train = {**overrides, "batch_size": 2, "num_workers": 0}
    # weights saved by the test: BundleTrainTask loads them before training (its "pretrained" default)
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(os.path.join(REPO, "bundles", "vlsanet", "configs", "inference.json"))
    parser.update({**overrides, "bundle_root": os.path.join(REPO, "bundles", "vlsanet")})
    torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "init.pt")
    bundle = prepare_app_bundle(
        os.path.join(REPO, "bundles", "vlsanet"), str(tmp_path / "app"), name="vlsanet",
        checkpoint=str(tmp_path / "init.pt"), inference_overrides=overrides, train_overrides=train, copy_models=False,
    )  # fmt: skip
    image = str(studies / "case_000.png")
    out = _drive(monailabel_python, tmp_path, bundle, "vlsanet", studies, image, [{}])
    print(f"\nVLSA-Net: train {out['train_seconds']:.1f} s; infer {out['results'][0]['seconds']:.2f} s")
    assert out["datalist_size"] == 6 and out["train_valid"] and out["model_written"] and out["infer_valid"]
    assert out["labels"] == {"optic disc rim": 1, "optic cup": 2}
    result = out["results"][0]
    assert result["mask_shape"] == list(np.asarray(Image.open(image)).shape[:2]), result
    assert set(result["mask_values"]) <= {0, 1, 2}, result


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

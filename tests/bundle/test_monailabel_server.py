"""A real MONAI Label 0.8.5 server on 127.0.0.1 for each bundle (TGC-Net, VLSA-Net fundus, VLSA-Net cardiac), driven
over its REST API as a client (3D Slicer, OHIF, curl) drives it: ``/info/``, ``/infer`` (with a report, without one,
with an empty one, with a counterfactual one), a label upload, ``/train`` for one epoch (and a training that fails on a
bad report file), then the server is stopped.

The server runs in MONAI Label's own environment, built by ``bash scripts/install_monailabel.sh DIR`` and named by
``MONAI_TEXTSEG_MONAILABEL_VENV=DIR``; the app and the bundles are prepared exactly as the bundle READMEs say
(``scripts/prepare_monailabel.py prepare``), with a tiny random CLIP and 64 x 64 images. The test is heavy (three
servers, three trainings): it is marked ``monailabel_server`` and runs as its own step of ``.ci/run``, which builds the
environment first and fails when it cannot; in the unit suite, without the variable, it is skipped.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai_ext.bundle import bundle_parser
from monai_ext.data.volume import slice_volume
from monai_ext.demo import make_cardiac_dataset, make_chest_xray_dataset, make_fundus_dataset
from PIL import Image

pytestmark = [pytest.mark.monailabel_server, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
VENV_VARIABLE = "MONAI_TEXTSEG_MONAILABEL_VENV"
SIZE = 64
TINY = {"clip_model_name": "monai-textseg-tiny-clip", "clip_pretrained": None, "clip_checkpoint": None, "amp": False}
TRAIN = {"batch_size": 2, "num_workers": 0}
TRAIN_REQUEST = {"max_epochs": 1, "val_split": 0.5, "device": "cpu", "multi_gpu": False}
COUNTERFACTUAL = "Bilateral pulmonary infection, two infected areas, upper left lung and upper right lung."


@pytest.fixture(scope="module")
def monailabel_command() -> Path:
    venv = os.environ.get(VENV_VARIABLE)
    if not venv:
        pytest.skip(
            f"real MONAI Label server test: needs MONAI Label's environment, built by "
            f"`bash scripts/install_monailabel.sh DIR` and named by {VENV_VARIABLE}=DIR (.ci/run's MONAI Label step "
            "does both and fails when the environment cannot be built)"
        )
    command = Path(venv, "bin", "monailabel")
    if not command.is_file():
        pytest.fail(
            f"{VENV_VARIABLE}={venv} has no bin/monailabel: build it with `bash scripts/install_monailabel.sh {venv}`"
        )
    return command


def test_environment_holds_monailabel_requirements_but_sam2(monailabel_command):
    """The recipe is complete: pip finds every requirement of MONAI Label (and of this package) installed but SAM2,
    left out on purpose; pydicom is 2 (pydicom-seg, imported by the server, fails on 3)."""
    python = str(monailabel_command.parent / "python")
    check = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True)
    assert check.stdout.strip().splitlines() == [
        "monailabel 0.8.5 requires sam2, which is not installed."
    ], check.stdout
    versions = subprocess.run(
        [python, "-c", "import monailabel, pydicom, pydicom_seg; print(monailabel.__version__, pydicom.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert versions[0] == "0.8.5" and versions[1].startswith("2."), versions


def _multipart(fields: dict[str, str], files: dict[str, Path]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    for name, value in fields.items():
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, path in files.items():
        body.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        body.write(path.read_bytes() + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


class Server:
    """``monailabel start_server`` on a free port of 127.0.0.1, in its own process group; its log in ``log``."""

    def __init__(self, command: Path, app: Path, studies: Path, model: str, log: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = log
        # as after `source <venv>/bin/activate`: the `monailabel` script runs the `python` it finds first
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", VENV_VARIABLE)}
        env.update(VIRTUAL_ENV=str(command.parents[1]), PATH=f"{command.parent}{os.pathsep}{env['PATH']}")
        env["OMP_NUM_THREADS"] = "1"
        argv = [str(command), "start_server", "--app", str(app), "--studies", str(studies)]
        argv += ["--host", "127.0.0.1", "--port", str(self.port), "--conf", "models", model]
        with open(log, "w") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + 420
        while True:
            try:
                self.info = self.request("GET", "/info/")[1]
                break
            except (urllib.error.URLError, ConnectionError):
                if self.process.poll() is not None or time.time() > deadline:
                    self.stop()
                    pytest.fail(f"MONAI Label server did not start:\n{self.log_tail()}")
                time.sleep(2)

    def log_tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None):
        """(HTTP status, JSON or bytes of the answer); errors are answers too."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=300) as answer:
                status, data, kind = answer.status, answer.read(), answer.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            status, data, kind = error.code, error.read(), error.headers.get("Content-Type", "")
        return status, json.loads(data) if "json" in kind else data

    def infer(self, model: str, image: str, params: dict | None = None):
        query = urllib.parse.urlencode({"image": image, "output": "image"})
        fields = {"params": json.dumps({"device": "cpu", **(params or {})})}
        return self.request("POST", f"/infer/{model}?{query}", *_multipart(fields, {}))

    def train(self, model: str, **params) -> dict:
        """Start a training and wait for its end; the task's status (``status``, ``details``: the log's last lines)."""
        body = json.dumps({**TRAIN_REQUEST, **params}).encode()
        status, answer = self.request("POST", f"/train/{model}", body, "application/json")
        assert status == 200, answer
        deadline = time.time() + 1200
        while True:
            task = self.request("GET", "/train/")[1]
            if task["status"] not in ("SUBMITTED", "RUNNING"):
                return task
            assert time.time() < deadline, f"training still running after 20 minutes:\n{self.log_tail()}"
            time.sleep(3)

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _mask(data: bytes, suffix: str, tmp_path: Path) -> np.ndarray:
    path = tmp_path / f"result_{uuid.uuid4().hex}{suffix}"
    path.write_bytes(data)
    return np.asarray(nib.load(path).dataobj) if suffix == ".nii.gz" else np.asarray(Image.open(path))


def _studies(root: Path, pairs, suffix: str, labelled) -> Path:
    """MONAI Label's local datastore: <studies>/case_<i><suffix>, final labels in <studies>/labels/final/ for the
    indices in ``labelled``."""
    studies = root / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    for i, (image, label) in enumerate(pairs):
        shutil.copyfile(image, studies / f"case_{i:03d}{suffix}")
        if i in labelled:
            shutil.copyfile(label, studies / "labels" / "final" / f"case_{i:03d}{suffix}")
    return studies


def _prepare(root: Path, bundle: str, name: str, inference: list, train: list, metadata: list | None = None) -> Path:
    """A random network's weights and the README's ``prepare`` command (from the repository root, overrides by the
    relative paths the README gives); returns the app folder."""
    files = [layer for layer in inference if isinstance(layer, str)]
    overrides = {k: v for layer in inference if isinstance(layer, dict) for k, v in layer.items()}
    parser = bundle_parser(str(REPO / "bundles" / bundle), files, overrides)
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), root / "model.pt")
    app = root / "app"
    argv = [sys.executable, "scripts/prepare_monailabel.py", "prepare", "--bundle_dir", f"bundles/{bundle}"]
    argv += ["--app_dir", str(app), "--name", name, "--checkpoint", str(root / "model.pt"), "--copy_models", "False"]
    argv += ["--inference_overrides", repr(inference), "--train_overrides", repr(train)]  # Python literals for fire
    argv += ["--metadata_overrides", repr(metadata)] if metadata else []
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (app / "main.py").is_file() and (app / "model" / name / "models" / "model.pt").is_file()
    return app


def _bundle_mask(bundle: Path, image: Path, text: str, out: Path) -> np.ndarray:
    """The mask the bundle's own inference (its evaluator, in this environment) predicts for ``image``."""
    (out / "input").mkdir(parents=True)
    shutil.copyfile(image, out / "input" / image.name)
    overrides = {"dataset_dir": str(out / "input"), "output_dir": str(out / "output"), "text": text}
    bundle_parser(str(bundle), overrides={**overrides, "device": "$torch.device('cpu')"}).get_parsed_content(
        "evaluator"
    ).run()
    (mask,) = (out / "output" / "masks").iterdir()
    return np.asarray(Image.open(mask)) // 255


def _upload_label(server: Server, studies: Path, image: str, label: Path) -> None:
    before = server.request("GET", "/datastore/?output=stats")[1]["completed"]
    status, answer = server.request(
        "PUT", f"/datastore/label?image={image}&tag=final", *_multipart({}, {"label": label})
    )
    assert status == 200, answer
    assert server.request("GET", "/datastore/?output=stats")[1]["completed"] == before + 1
    assert any(p.name.startswith(image) for p in (studies / "labels" / "final").iterdir())


def _train_once(server: Server, bundle: Path, model: str, **params) -> None:
    weights = bundle / "models" / "model.pt"
    before = weights.stat().st_mtime_ns
    task = server.train(model, **params)
    assert task["status"] == "DONE", "\n".join(task.get("details", [])) + "\n" + server.log_tail()
    assert weights.stat().st_mtime_ns != before, "training did not write models/model.pt"


def test_tgcnet_server(monailabel_command, tmp_path):
    data = tmp_path / "data"
    make_chest_xray_dataset(str(data), n_train=6, n_val=0, n_test=0, image_size=SIZE, seed=3)
    items = json.loads((data / "datalist.json").read_text())["training"]
    studies = _studies(tmp_path, [(data / d["image"], data / d["label"]) for d in items], ".png", labelled={1, 2, 3, 4})
    for i, item in enumerate(items):  # each study's report beside it, as the README asks
        (studies / f"case_{i:03d}.txt").write_text(item["text"], encoding="utf-8")
    tiny = {**TINY, "image_size": SIZE}
    app = _prepare(tmp_path, "tgcnet", "tgcnet", [tiny], [{**tiny, **TRAIN}])
    bundle = app / "model" / "tgcnet"
    default_prompt = json.loads((bundle / "configs" / "inference.json").read_text())["default_prompt"]
    image_shape = np.asarray(Image.open(studies / "case_000.png")).shape
    server = Server(monailabel_command, app, studies, "tgcnet", tmp_path / "server.log")
    try:
        model = server.info["models"]["tgcnet"]
        assert model["labels"] == {"infected region (logit)": 1}, model  # the value the mask marks
        assert model["dimension"] == 2

        masks = {}
        for key, params in (
            ("report", {"text": items[0]["text"]}),
            ("none", {}),
            ("default", {"text": default_prompt}),
            ("counterfactual", {"text": COUNTERFACTUAL}),
        ):
            status, answer = server.infer("tgcnet", "case_000", params)
            assert status == 200, f"{key}: {answer}\n{server.log_tail()}"
            masks[key] = _mask(answer, ".png", tmp_path)
            assert masks[key].shape == image_shape and set(np.unique(masks[key])) <= {0, 1}, key
        # without text the report beside the image is used, not the default prompt
        np.testing.assert_array_equal(masks["none"], masks["report"])
        assert (masks["default"] != masks["report"]).any(), "the default prompt gives the report's mask"
        assert (masks["counterfactual"] != masks["report"]).any(), "a counterfactual report must change the mask"
        assert model["config"]["text"] is None  # what clients show: no report given, not the default prompt
        # the server's mask is the bundle's own prediction, in the image's orientation (rows, columns)
        expected = _bundle_mask(bundle, studies / "case_000.png", items[0]["text"], tmp_path / "bundle_inference")
        agreement = np.mean(masks["report"] == expected), np.mean(masks["report"] == expected.T)
        assert agreement[0] > 0.99 and agreement[1] < 0.9, (agreement, expected.mean())

        status, answer = server.infer("tgcnet", "case_000", {"text": "  "})
        assert status == 422, (status, answer)
        assert answer["detail"].startswith("TextInputError: The request's text for image"), answer
        assert "is empty" in answer["detail"], answer

        _upload_label(server, studies, "case_005", data / items[5]["label"])

        report = studies / "case_002.txt"
        report.write_text("", encoding="utf-8")  # a broken report file: training fails and says which
        task = server.train("tgcnet")
        details = "\n".join(task["details"])
        assert task["status"] == "ERROR", details
        assert f"Report file '{report}'" in details and "is empty" in details, details
        report.write_text(items[2]["text"], encoding="utf-8")
        _train_once(server, bundle, "tgcnet")
    finally:
        server.stop()
    assert server.process.returncode is not None


def test_vlsanet_fundus_server(monailabel_command, tmp_path):
    data = tmp_path / "data"
    make_fundus_dataset(str(data), n_per_domain=6, image_size=SIZE, seed=3, domains=["domain_a"], test_fraction=0.0)
    domain = data / "domain_a"
    items = json.loads((domain / "datalist.json").read_text())["training"]
    pairs = [(domain / d["image"], domain / d["label"]) for d in items]
    studies = _studies(tmp_path, pairs, ".png", labelled={1, 2, 3, 4})
    tiny = {**TINY, "image_size": SIZE, "decoder_channels": 16, "num_bases": 8}
    app = _prepare(tmp_path, "vlsanet", "vlsanet", [tiny], [{**tiny, **TRAIN}])
    server = Server(monailabel_command, app, studies, "vlsanet", tmp_path / "server.log")
    try:
        labels = server.info["models"]["vlsanet"]["labels"]
        assert labels == {"optic disc rim": 1, "optic cup": 2}
        status, answer = server.infer("vlsanet", "case_000")
        assert status == 200, f"{answer}\n{server.log_tail()}"
        mask = _mask(answer, ".png", tmp_path)
        assert mask.shape == np.asarray(Image.open(studies / "case_000.png")).shape[:2]
        assert set(np.unique(mask)) <= {0, *labels.values()}
        _upload_label(server, studies, "case_005", pairs[5][1])
        _train_once(server, app / "model" / "vlsanet", "vlsanet")
    finally:
        server.stop()


def test_vlsanet_cardiac_server(monailabel_command, tmp_path):
    data = tmp_path / "data"
    make_cardiac_dataset(str(data), n_per_domain=3, image_size=SIZE, slices=2, domains=["bssfp"], test_fraction=0.0)
    volumes = json.loads((data / "bssfp" / "datalist.json").read_text())["training"]
    pairs = []
    for v, volume in enumerate(volumes):
        for s in slice_volume(
            data / "bssfp" / volume["image"], tmp_path / "slices" / str(v), data / "bssfp" / volume["label"]
        ):
            pairs.append((Path(s["image"]), Path(s["label"])))
    studies = _studies(tmp_path, pairs, ".nii.gz", labelled={1, 2, 3, 4})
    tiny = {**TINY, "image_size": SIZE, "decoder_channels": 16, "num_bases": 8}
    app = _prepare(
        tmp_path, "vlsanet", "vlsanet_cardiac", ["configs/cardiac_inference.json", tiny],
        ["configs/cardiac.json", {**tiny, **TRAIN}], ["configs/cardiac_metadata.json"],
    )  # fmt: skip
    server = Server(monailabel_command, app, studies, "vlsanet_cardiac", tmp_path / "server.log")
    try:
        labels = server.info["models"]["vlsanet_cardiac"]["labels"]
        assert labels == {"left ventricle cavity": 1, "myocardium": 2, "right ventricle": 3}
        status, answer = server.infer("vlsanet_cardiac", "case_000")
        assert status == 200, f"{answer}\n{server.log_tail()}"
        path = tmp_path / "result.nii.gz"
        path.write_bytes(answer)
        result, source = nib.load(path), nib.load(studies / "case_000.nii.gz")
        assert result.shape == source.shape
        np.testing.assert_allclose(result.affine, source.affine, atol=1e-6)  # the input's geometry, not identity
        assert not np.allclose(source.affine, np.eye(4))
        assert set(np.unique(np.asarray(result.dataobj))) <= {0, *labels.values()}
        _upload_label(server, studies, "case_005", pairs[5][1])
        # from scratch (MONAI Label's own BundleTrainTask fails on pretrained false)
        _train_once(server, app / "model" / "vlsanet_cardiac", "vlsanet_cardiac", pretrained=False)
    finally:
        server.stop()

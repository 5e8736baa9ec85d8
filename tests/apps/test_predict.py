"""Predict with your own report: PNG -> PNG mask, NIfTI -> NIfTI with the input's affine, DICOM (file and series) ->
NIfTI in the DICOM geometry, overlays with the report, no silent overwrite, CSV mode that reports failures at the end.
"""

from __future__ import annotations

import csv
import os

import nibabel as nib
import numpy as np
import pydicom.data
import pytest
import torch
from monai_ext.apps.predict import BundlePredictor, predict_csv
from monai_ext.bundle.parser import bundle_parser
from monai_ext.checkpoint import CheckpointError
from monai_ext.data import PydicomSeriesReader
from monai_ext.demo import write_dicom_ct_slice
from monai_ext.io import atomic_save
from PIL import Image
from pydicom.uid import generate_uid
from script_loader import load_script

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLE = os.path.join(REPO, "bundles", "tgcnet")
DEMO = ["configs/demo_inference.json"]
CT = DEMO + ["configs/inference_ct.json"]
REPORT = "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    parser = bundle_parser(BUNDLE, DEMO)
    net = parser.get_parsed_content("network_def")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.text_adapter.parameters():
            p.normal_(0, 0.2)
    path = str(tmp_path_factory.mktemp("predict_ckpt") / "model.pt")
    atomic_save({"model": net.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return BundlePredictor(BUNDLE, checkpoint=checkpoint, config_files=DEMO)


@pytest.fixture(scope="module")
def ct_predictor(checkpoint):
    return BundlePredictor(BUNDLE, checkpoint=checkpoint, config_files=CT)


def write_png(path, height=150, width=130, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)).save(path)
    return str(path)


def test_png_gives_png_mask_at_input_size_and_overlay_with_report(predictor, tmp_path):
    image = write_png(tmp_path / "chest.png")
    result = predictor.predict_file(image, REPORT, str(tmp_path / "out"))
    assert result.mask_path.endswith("chest_mask.png") and result.overlay_path.endswith("chest_overlay.png")
    mask = np.asarray(Image.open(result.mask_path))
    assert mask.shape == (150, 130)
    assert set(np.unique(mask)) <= {0, 255}
    assert result.foreground == int((mask > 0).sum())
    overlay = Image.open(result.overlay_path)
    assert overlay.height > overlay.width  # the report band below the (enlarged) picture
    # Not overwritten by default, checked before any work; replaced on request.
    with pytest.raises(FileExistsError, match="overwrite=True"):
        predictor.predict_file(image, "Lower right lung infection.", str(tmp_path / "out"))
    predictor.predict_file(image, "Lower right lung infection.", str(tmp_path / "out"), overwrite=True)
    assert not [f for f in os.listdir(tmp_path / "out") if f.endswith(".tmp")]


def test_mask_is_the_networks_thresholded_output_on_the_input_grid(predictor, tmp_path):
    size = predictor.parser.get_parsed_content("image_size")  # no resize: the input grid is the network's
    image = write_png(tmp_path / "grid.png", height=size, width=size, seed=1)
    result = predictor.predict_file(image, REPORT, str(tmp_path / "out"))
    _, prepared = predictor.prepare(image, REPORT)
    with torch.no_grad():
        logits = predictor.network(
            prepared["image"].as_tensor()[None], prepared["text_tokens"][None], prepared["knowledge_tokens"][None]
        )
    expected = (torch.sigmoid(logits)[0, 0] >= 0.5).numpy().T.astype(np.uint8) * 255  # (x, y) -> rows, columns
    np.testing.assert_array_equal(np.asarray(Image.open(result.mask_path)), expected)


def test_nifti_volume_keeps_affine_and_grid(ct_predictor, tmp_path):
    rng = np.random.default_rng(2)
    volume = (rng.random((40, 48, 3)) * 1200 - 1000).astype(np.float32)
    affine = np.array([[-0.7, 0, 0, 12.0], [0, 0.8, 0, -30.0], [0, 0, 2.5, 40.0], [0, 0, 0, 1]])
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(volume, affine), str(path))
    result = ct_predictor.predict_file(str(path), "Ground-glass opacity in both lower lobes.", str(tmp_path / "out"))
    assert result.mask_path.endswith("ct_mask.nii.gz")
    out = nib.load(result.mask_path)
    assert out.shape == (40, 48, 3)
    np.testing.assert_allclose(out.affine, affine, atol=1e-5)
    assert set(np.unique(np.asarray(out.dataobj))) <= {0, 1}
    assert os.path.isfile(result.overlay_path)


def test_volume_is_segmented_like_slice_by_slice_with_the_report(checkpoint, tmp_path):
    """Batches of slices (5 slices in 2 + 2 + 1) give what the network gives on each slice alone, with the report."""
    ct_predictor = BundlePredictor(BUNDLE, checkpoint=checkpoint, config_files=CT, slice_batch_size=2)
    rng = np.random.default_rng(7)
    volume = (rng.random((40, 48, 5)) * 1200 - 1000).astype(np.float32)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))
    _, prepared = ct_predictor.prepare(str(path), REPORT)
    image = prepared["image"].as_tensor()
    assert image.ndim == 4 and image.shape[-1] == 5
    pred = ct_predictor.infer(prepared)
    assert tuple(pred.shape) == (1, *image.shape[1:])

    def reference(text_tokens):
        with torch.no_grad():
            knowledge = prepared["knowledge_tokens"][None]
            logits = [ct_predictor.network(image[None, ..., k], text_tokens, knowledge) for k in range(image.shape[-1])]
        return (torch.sigmoid(torch.stack(logits, dim=-1)[0]) >= 0.5).float()

    torch.testing.assert_close(pred, reference(prepared["text_tokens"][None]), rtol=0, atol=0)
    # The report matters: without its tokens (the network's default prompt) the masks differ.
    assert not torch.equal(pred, reference(None))


def test_dicom_series_and_file_give_nifti_in_dicom_geometry(ct_predictor, predictor, tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "series_0001"
    folder.mkdir()
    uid = generate_uid()
    for k in range(3):
        pixels = rng.integers(0, 2000, (36, 44), dtype=np.uint16)  # 36 rows, 44 columns
        write_dicom_ct_slice(
            folder / f"s{2 - k}.dcm",
            pixels,
            (-50.0, 20.0, 100.0 + 3.0 * k),
            k + 1,
            uid,
            spacing=(0.7, 0.9),
            intercept=-1024.0,
        )
    expected_affine = PydicomSeriesReader().get_data(PydicomSeriesReader().read(str(folder)))[1]["affine"]
    result = ct_predictor.predict_file(str(folder), "Consolidation in the right lower lobe.", str(tmp_path / "out"))
    assert os.path.basename(result.mask_path) == "series_0001_mask.nii.gz"
    out = nib.load(result.mask_path)
    assert out.shape == (44, 36, 3)  # (column, row, slice)
    np.testing.assert_allclose(out.affine, expected_affine, atol=1e-4)
    assert np.allclose(out.affine[:3, 3], [50.0, -20.0, 100.0])  # LPS origin (-50, 20, 100) in RAS

    single = predictor.predict_file(str(folder / "s0.dcm"), REPORT, str(tmp_path / "out_single"))
    out = nib.load(single.mask_path)
    assert out.shape == (44, 36, 1) and single.mask_path.endswith("s0_mask.nii.gz")


def test_csv_mode_reports_failures_at_the_end_without_stopping(predictor, tmp_path):
    write_png(tmp_path / "a.png", seed=4)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    rows = [
        ("a.png", REPORT),
        ("missing.png", REPORT),
        ("broken.png", REPORT),
        ("a.png", ""),
        ("a.png", "Upper left lung infection only."),  # the same image with another report: its own outputs
    ]
    csv_file = tmp_path / "cases.csv"
    with open(csv_file, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "text"])
        writer.writerows(rows)
    out = tmp_path / "out"
    summary = predict_csv(predictor, str(csv_file), str(out), progress=True)
    assert len(summary.results) == 2
    assert [row for row, _, _ in summary.failures] == [3, 4, 5]
    messages = " | ".join(error for _, _, error in summary.failures)
    assert "not found" in messages and "Cannot read image" in messages and "No report text" in messages
    assert {os.path.basename(r.mask_path) for r in summary.results} == {
        "a_mask.png",
        "a_3_mask.png",
    }  # third row naming a.png
    with open(summary.summary_file) as f:
        statuses = [row["status"] for row in csv.DictReader(f)]
    assert statuses == ["ok", "failed", "failed", "failed", "ok"]
    assert "2 predicted, 3 failed" in summary.report()
    with pytest.raises(FileExistsError):
        predict_csv(predictor, str(csv_file), str(out), progress=False)


def test_cli_and_checkpoint_errors(checkpoint, tmp_path, capsys):
    cli = load_script("predict")
    image = write_png(tmp_path / "cli.png", seed=5)
    cli.main(bundle_dir=BUNDLE, checkpoint=checkpoint, configs=DEMO, image=image, text=REPORT, output_dir=str(tmp_path))
    assert "cli_mask.png" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--text"):
        cli.main(bundle_dir=BUNDLE, checkpoint=checkpoint, configs=DEMO, image=image, output_dir=str(tmp_path))
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.pt"):
        BundlePredictor(BUNDLE, checkpoint=str(tmp_path / "bad.pt"), config_files=DEMO)


def test_cli_refuses_an_undecodable_dicom_in_one_line(checkpoint, tmp_path):
    """pydicom's 12-bit JPEG Extended test file: one line naming the file and its transfer syntax, no traceback."""
    dicom = os.path.join(os.path.dirname(pydicom.data.__file__), "test_files", "JPEG-lossy.dcm")
    if not os.path.isfile(dicom):
        pytest.skip(f"JPEG-lossy.dcm is not among the test files of pydicom {pydicom.__version__}")
    cli = load_script("predict")
    with pytest.raises(SystemExit) as refused:
        cli.main(bundle_dir=BUNDLE, checkpoint=checkpoint, configs=DEMO, image=dicom, text=REPORT,
                 output_dir=str(tmp_path))  # fmt: skip
    message = str(refused.value)
    assert message.startswith("predict: ImageReadError: ") and "\n" not in message
    assert dicom in message and "JPEG Extended" in message
    assert not os.listdir(tmp_path)


@pytest.mark.skipif(not os.path.isdir(os.path.join(REPO, "bundles", "vlsanet", "configs")), reason="no VLSA-Net bundle")
def test_same_predictor_serves_an_image_only_multiclass_bundle(tmp_path):
    bundle = os.path.join(REPO, "bundles", "vlsanet")
    net = bundle_parser(bundle, DEMO).get_parsed_content("network_def")
    atomic_save({"model": net.state_dict()}, str(tmp_path / "model.pt"))
    predictor = BundlePredictor(bundle, checkpoint=str(tmp_path / "model.pt"), config_files=DEMO)
    assert predictor.input_keys == {}  # class prompts are built in: no report needed
    rng = np.random.default_rng(6)
    Image.fromarray(rng.integers(0, 256, (90, 110, 3), dtype=np.uint8)).save(tmp_path / "fundus.png")
    result = predictor.predict_file(str(tmp_path / "fundus.png"), None, str(tmp_path / "out"))
    mask = np.asarray(Image.open(result.mask_path))
    assert mask.shape == (90, 110) and mask.max() <= 2  # index map: background, disc rim, cup

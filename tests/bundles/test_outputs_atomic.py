"""Nothing lost: a bundle train + evaluate + inference leaves the input folder byte-identical; predictions, reports and
checkpoints are written atomically; an existing output is not replaced unless ``overwrite`` is asked for."""

import glob
import hashlib
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow
from monai.data import MetaTensor
from monai_ext.data import SafeSaveImaged, write_mask
from monai_ext.demo import make_chest_xray_dataset
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLE = os.path.join(REPO, "bundles", "tgcnet")
CONFIGS = os.path.join(BUNDLE, "configs")
TRAIN = [os.path.join(CONFIGS, "train.json"), os.path.join(CONFIGS, "demo.json")]
INFER = [os.path.join(CONFIGS, "inference.json"), os.path.join(CONFIGS, "demo_inference.json")]


def folder_digest(folder):
    """path -> (sha256, size, mtime_ns) of every file under ``folder``."""
    digest = {}
    for path in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True)):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                stat = os.stat(path)
                digest[os.path.relpath(path, folder)] = (
                    hashlib.sha256(f.read()).hexdigest(),
                    stat.st_size,
                    stat.st_mtime_ns,
                )
    return digest


def _run(config_file, workflow_type, **overrides):
    workflow = ConfigWorkflow(config_file=config_file, workflow_type=workflow_type, bundle_root=BUNDLE, **overrides)
    workflow.initialize()
    workflow.run()
    workflow.finalize()


def test_bundle_run_leaves_inputs_untouched_and_does_not_overwrite_outputs(tmp_path):
    data_dir = str(tmp_path / "data")
    make_chest_xray_dataset(data_dir, n_train=8, n_val=4, n_test=4, image_size=64, seed=4)
    before = folder_digest(data_dir)
    models, out = str(tmp_path / "models"), str(tmp_path / "pred")
    common = {"dataset_dir": data_dir, "image_size": 64}
    _run(TRAIN, "train", ckpt_dir=models, log_dir=str(tmp_path / "runs"), output_dir=str(tmp_path / "eval"),
         max_epochs=1, batch_size=4, **common)  # fmt: skip
    _run(TRAIN + [os.path.join(CONFIGS, "evaluate.json")], "eval", ckpt_dir=models, log_dir=str(tmp_path / "runs"),
         output_dir=str(tmp_path / "eval"), **common)  # fmt: skip
    infer = {"datalist_file": os.path.join(data_dir, "datalist.json"), "ckpt_dir": models, "output_dir": out, **common}
    _run(INFER, "infer", **infer)
    assert folder_digest(data_dir) == before, "the input folder changed"

    written = folder_digest(out)
    assert len([p for p in written if p.startswith("masks")]) == 4
    assert "failures.json" in written
    assert not [p for p in glob.glob(os.path.join(out, "**", ".*"), recursive=True) if ".tmp" in p]
    with pytest.raises(Exception) as info:  # ConfigWorkflow wraps it in a RuntimeError
        _run(INFER, "infer", **infer)
    cause = info.value
    while cause is not None and not isinstance(cause, FileExistsError):
        cause = cause.__cause__ or cause.__context__
    assert cause is not None and "already exists; set overwrite=True" in str(cause), info.value
    assert folder_digest(out) == written, "a refused re-run changed existing outputs"
    _run(INFER, "infer", overwrite=True, **infer)
    assert set(folder_digest(out)) == set(written)
    assert folder_digest(data_dir) == before
    for checkpoint in (os.path.join(models, "model.pt"), os.path.join(models, "trainer", "trainer.pt")):
        torch.load(checkpoint, map_location="cpu", weights_only=True)  # complete, loadable
    assert not [n for n in os.listdir(os.path.join(models, "trainer")) if n != "trainer.pt"]


def _pred(name):
    return MetaTensor(torch.ones(1, 6, 4), meta={"filename_or_obj": f"/in/{name}.png"})


def test_safe_save_refuses_existing_and_writes_atomically(tmp_path):
    save = SafeSaveImaged(keys="pred", output_dir=str(tmp_path), output_ext=".png", output_dtype=np.uint8, scale=255,
                          separate_folder=False, output_postfix="mask")  # fmt: skip
    save({"pred": _pred("a")})
    path = str(tmp_path / "a_mask.png")
    assert np.asarray(Image.open(path)).max() == 255
    mtime = os.stat(path).st_mtime_ns
    with pytest.raises(FileExistsError, match="a_mask.png"):
        save({"pred": _pred("a")})
    assert os.stat(path).st_mtime_ns == mtime
    SafeSaveImaged(keys="pred", output_dir=str(tmp_path), output_ext=".png", output_dtype=np.uint8,
                   separate_folder=False, output_postfix="mask", overwrite=True)({"pred": _pred("a")})  # fmt: skip
    assert os.listdir(tmp_path) == ["a_mask.png"]  # no temporary file left


def test_safe_save_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    save = SafeSaveImaged(keys="pred", output_dir=str(tmp_path), output_ext=".nii.gz", separate_folder=False)
    writer = save.saver.writers[0]
    base = writer.__mro__[1]

    def crash(self, filename, verbose=False, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(base, "write", crash)
    with pytest.raises(RuntimeError):
        save({"pred": _pred("b")})
    assert os.listdir(tmp_path) == []


def test_write_mask_png_and_nifti(tmp_path):
    mask = np.zeros((6, 4), dtype=np.float32)  # MONAI (x, y): 6 columns, 4 rows
    mask[1:3, 0] = 1
    write_mask(mask, tmp_path / "m.png")
    picture = np.asarray(Image.open(tmp_path / "m.png"))
    assert picture.shape == (4, 6) and picture.dtype == np.uint8
    np.testing.assert_array_equal(picture, mask.T * 255)  # binary -> 0/255
    labels = np.array([[0, 1], [2, 1]], dtype=np.int64)
    write_mask(labels, tmp_path / "labels.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "labels.png")), labels.T)  # index maps kept

    affine = np.diag([0.7, 0.8, 2.5, 1.0])
    affine[:3, 3] = [10.0, -20.0, 30.0]
    volume = np.zeros((4, 3, 2), dtype=np.float64)
    volume[0, 0, 1] = 1.0
    write_mask(volume, tmp_path / "m.nii.gz", affine)
    written = nib.load(tmp_path / "m.nii.gz")
    np.testing.assert_allclose(written.affine, affine)
    assert written.get_data_dtype() == np.uint8  # integral values 0..255 are stored compactly
    np.testing.assert_array_equal(np.asarray(written.dataobj), volume)
    first = (tmp_path / "m.nii.gz").read_bytes()
    write_mask(volume, tmp_path / "m.nii.gz", affine, overwrite=True)
    assert (tmp_path / "m.nii.gz").read_bytes() == first  # no timestamp in the gzip stream
    write_mask(volume * 0.5, tmp_path / "p.nii", affine)
    assert nib.load(tmp_path / "p.nii").get_data_dtype() == np.float32

    with pytest.raises(FileExistsError, match="m.png"):
        write_mask(mask, tmp_path / "m.png")
    with pytest.raises(ValueError, match="needs an affine"):
        write_mask(volume, tmp_path / "no_affine.nii.gz")
    with pytest.raises(ValueError, match="must end in"):
        write_mask(mask, tmp_path / "m.jpg")
    with pytest.raises(ValueError, match="must be 2D"):
        write_mask(volume, tmp_path / "v.png")
    assert sorted(os.listdir(tmp_path)) == ["labels.png", "m.nii.gz", "m.png", "p.nii"]

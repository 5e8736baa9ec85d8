"""`inference_ct.json`: a CT volume (NIfTI) is segmented slice by slice and written as a NIfTI mask on the input's grid."""

import glob
import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

BUNDLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bundles", "tgcnet")
CONFIGS = [
    os.path.join(BUNDLE, "configs", name) for name in ("inference.json", "demo_inference.json", "inference_ct.json")
]


def test_ct_volume_gives_a_nifti_mask_with_the_input_affine(tmp_path):
    rng = np.random.default_rng(0)
    volume = (rng.normal(-700, 200, size=(40, 36, 5))).astype(np.int16)  # HU, 5 axial slices
    affine = np.array([[-0.8, 0, 0, 120.0], [0, -0.7, 0, 95.0], [0, 0, 2.5, -300.0], [0, 0, 0, 1]])
    ct_path = tmp_path / "case.nii.gz"
    nib.save(nib.Nifti1Image(volume, affine), ct_path)
    overrides = {
        "bundle_root": BUNDLE,
        "ct_volume": str(ct_path),
        "ckpt_dir": str(tmp_path / "models"),
        "output_dir": str(tmp_path / "out"),
        "image_size": 64,
        "text": "Ground-glass opacity in the lower left lung.",
    }
    workflow = ConfigWorkflow(config_file=CONFIGS, workflow_type="infer", **overrides)
    os.makedirs(overrides["ckpt_dir"])
    torch.save(workflow.parser.get_parsed_content("network_def").state_dict(), tmp_path / "models" / "model.pt")
    workflow.initialize()
    workflow.run()
    workflow.finalize()

    outputs = glob.glob(str(tmp_path / "out" / "*.nii.gz"))
    assert len(outputs) == 1 and "case" in os.path.basename(outputs[0])
    mask = nib.load(outputs[0])
    assert mask.shape[:3] == volume.shape
    np.testing.assert_allclose(mask.affine, affine, atol=1e-4)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}

    # The same volume again: refused, the first mask kept.
    written = os.path.getmtime(outputs[0])
    again = ConfigWorkflow(config_file=CONFIGS, workflow_type="infer", **overrides)
    again.initialize()
    with pytest.raises(Exception) as info:  # ConfigWorkflow wraps it in a RuntimeError
        again.run()
    assert "already exists; set overwrite=True" in repr(info.value) + repr(info.value.__cause__)
    assert os.path.getmtime(outputs[0]) == written


def test_unreadable_ct_volume_fails_the_run_and_is_reported(tmp_path):
    volume = np.zeros((16, 16, 3), np.float32)
    volume[0, 0, 0] = np.nan
    ct_path = tmp_path / "nan_case.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), ct_path)
    out = tmp_path / "out"
    overrides = {"bundle_root": BUNDLE, "ct_volume": str(ct_path), "ckpt_dir": str(tmp_path / "models"),
                 "output_dir": str(out), "image_size": 32, "text": "Ground-glass opacity."}  # fmt: skip
    workflow = ConfigWorkflow(config_file=CONFIGS, workflow_type="infer", **overrides)
    os.makedirs(overrides["ckpt_dir"])
    torch.save(workflow.parser.get_parsed_content("network_def").state_dict(), tmp_path / "models" / "model.pt")
    workflow.initialize()
    with pytest.raises(Exception) as info:
        workflow.run()
    assert "nan_case.nii.gz" in repr(info.value) + repr(info.value.__cause__) + repr(info.value.__context__)
    with open(out / "failures.json") as f:
        failures = json.load(f)
    assert failures["num_failed"] == 1 and "NaN/Inf" in failures["failures"][0]["message"]
    assert not glob.glob(str(out / "*.nii.gz"))

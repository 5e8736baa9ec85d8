"""One table of bad inputs, each fed through the path the bundles use, each answered by a clear error that names the
file (or item) and the problem: never a deep torch traceback, never a silently wrong result. Inputs that are valid but
unusual (non-ASCII or over-long reports, identical duplicate rows) are accepted with a documented warning.

Columns: id, a function ``case(tmp_path) -> (action, file_or_item_that_must_be_named)``, the expected exception type
(``None``: must succeed, see ``check``), a regex the message must match (the problem), and for accepted inputs a check
of the result / log."""

from __future__ import annotations

import json
import logging
import os
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom.data
import pytest
import torch
from monai_ext.checkpoint import CheckpointError
from monai_ext.clip import TINY_CLIP_NAME
from monai_ext.data import (
    BinarizeMaskd,
    CheckedLoadImaged,
    DatasetValidationError,
    ImageReadError,
    LabelValueError,
    ShapeMismatchError,
    ValidateLabelValuesd,
    load_lvit_split,
    load_text_datalist,
)
from monai_ext.demo import write_dicom_ct_slice
from monai_ext.handlers import CheckedCheckpointLoader
from monai_ext.text import ClipTokenized
from monai_ext.text.tokenize import TextInputError
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(REPO, "bundles", "tgcnet", "configs")


# ----------------------------------------------------------------------------------------------------- file makers
def _png(path, array):
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return str(path)


def _truncate(path, keep=0.5):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))
    return str(path)


def _dicom(path):
    return write_dicom_ct_slice(path, np.arange(32 * 32, dtype=np.uint16).reshape(32, 32), (0, 0, 0), 1)


def _nifti(path, data):
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.eye(4)), str(path))
    return str(path)


def _lvit(root, rows, names=("a", "b")):
    """A one-split LViT layout (Train) with the given (Image, Description) rows."""
    img, lab = root / "Train_Folder" / "img", root / "Train_Folder" / "labelcol"
    img.mkdir(parents=True)
    lab.mkdir(parents=True)
    for name in names:
        _png(img / f"{name}.png", np.zeros((8, 8)))
        _png(lab / f"mask_{name}.png", np.zeros((8, 8)))
    pd.DataFrame(rows, columns=["Image", "Description"]).to_csv(root / "Train_Folder" / "Train_text.csv", index=False)
    return str(root / "Train_Folder" / "Train_text.csv")


def _tokenize(text, name="covid_7.png"):
    return ClipTokenized(keys="text", model_name=TINY_CLIP_NAME)({"image": name, "text": text})


def _tiny_net(name):
    """The bundle's network built from its configs (TGCNet) or a tiny VLSANet."""
    if name == "TGCNet":
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config([os.path.join(CONFIGS, "train.json"), os.path.join(CONFIGS, "demo.json")])
        parser["bundle_root"] = os.path.join(REPO, "bundles", "tgcnet")
        return parser.get_parsed_content("network_def")
    from monai_ext.networks.nets import VLSANet

    prompts = {"background": ["outside the organ"], "disc": ["a round region"], "cup": ["inside the disc"]}
    return VLSANet(TINY_CLIP_NAME, num_bases=8, decoder_channels=16, image_size=64, class_prompts=prompts)


# ----------------------------------------------------------------------------------------------------------- cases
def corrupt_png(tmp):
    path = _truncate(_png(tmp / "covid_1.png", np.random.default_rng(0).integers(0, 255, (64, 64))))
    return lambda: CheckedLoadImaged(keys="image")({"image": path}), path


def corrupt_dicom(tmp):
    path = _truncate(_dicom(tmp / "slice.dcm"))
    return lambda: CheckedLoadImaged(keys="image")({"image": path}), path


def dicom_no_decoder_reads(tmp):
    """pydicom's 12-bit JPEG Extended test file: no decoder of pydicom reads its (malformed) JPEG stream, and without
    the ``dicom`` extra none reads 12-bit JPEG at all; either way one line names the file and the transfer syntax."""
    path = os.path.join(os.path.dirname(pydicom.data.__file__), "test_files", "JPEG-lossy.dcm")
    if not os.path.isfile(path):
        pytest.skip(f"JPEG-lossy.dcm is not among the test files of pydicom {pydicom.__version__}")
    return lambda: CheckedLoadImaged(keys="image")({"image": path}), path


def corrupt_nifti(tmp):
    path = _truncate(_nifti(tmp / "ct.nii.gz", np.random.default_rng(0).normal(size=(16, 16, 16))))
    return lambda: CheckedLoadImaged(keys="image")({"image": path}), path


def not_2d_or_3d(tmp):
    path = _nifti(tmp / "5d.nii.gz", np.zeros((4, 4, 4, 2, 2)))
    return lambda: CheckedLoadImaged(keys="image")({"image": path}), path


def four_d_nifti(tmp):
    path = _nifti(tmp / "4d.nii.gz", np.zeros((8, 8, 4, 2)))
    return lambda: CheckedLoadImaged(keys="image")({"image": path}), path


def _bundle_loader(bundle):
    """The CheckedLoadImaged of a bundle's training ``load_transforms``, as its config builds it."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(os.path.join(REPO, "bundles", bundle, "configs", "train.json"))
    index = next(i for i, t in enumerate(parser["load_transforms"]) if t["_target_"].endswith("CheckedLoadImaged"))
    return parser.get_parsed_content(f"load_transforms#{index}")


def rgba_image_into_grey_bundle(tmp):
    image = _png(tmp / "rgba.png", np.full((8, 8, 4), 200))
    mask = _png(tmp / "mask.png", np.zeros((8, 8)))
    return lambda: _bundle_loader("tgcnet")({"image": image, "label": mask}), image


def colour_mask(tmp):
    image = _png(tmp / "img.png", np.zeros((8, 8)))
    mask = _png(tmp / "mask_colour.png", np.stack([np.full((8, 8), 255), np.zeros((8, 8)), np.zeros((8, 8))], -1))
    return lambda: _bundle_loader("tgcnet")({"image": image, "label": mask}), mask


def grey_image_into_colour_bundle(tmp):
    image = _png(tmp / "grey_fundus.png", np.full((8, 8), 100))
    mask = _png(tmp / "mask.png", np.zeros((8, 8)))
    return lambda: _bundle_loader("vlsanet")({"image": image, "label": mask}), image


def volume_into_2d_bundle(tmp):
    image, mask = _nifti(tmp / "volume.nii.gz", np.zeros((8, 8, 4))), _nifti(tmp / "labels.nii.gz", np.zeros((8, 8, 4)))
    return lambda: _bundle_loader("vlsanet")({"image": image, "label": mask}), image


def size_mismatch(tmp):
    image, mask = _png(tmp / "img.png", np.zeros((8, 8))), _png(tmp / "mask_small.png", np.zeros((8, 6)))
    return lambda: CheckedLoadImaged(keys=["image", "label"])({"image": image, "label": mask}), mask


def non_binary_mask(tmp):
    image = _png(tmp / "img.png", np.zeros((8, 8)))
    mask = _png(tmp / "mask_jpeg_like.png", np.tile([0, 3, 128, 255], (8, 2)))
    load, binarize = CheckedLoadImaged(keys=["image", "label"]), BinarizeMaskd(keys="label")
    return lambda: binarize(load({"image": image, "label": mask})), mask


def out_of_range_label(tmp):
    label = _png(tmp / "disc_cup.png", np.tile([0, 1, 2, 7], (8, 2)))
    load, check = CheckedLoadImaged(keys="label"), ValidateLabelValuesd(keys="label", allowed=(0, 1, 2))
    return lambda: check(load({"label": label})), label


def nan_inf_pixels(tmp):
    data = np.zeros((4, 4, 3), dtype=np.float32)
    data[0, 0, 0], data[1, 1, 1] = np.nan, np.inf
    path = _nifti(tmp / "nan.nii.gz", data)
    return lambda: CheckedLoadImaged(keys="image")({"image": path}), path


def empty_report(tmp):
    return lambda: _tokenize(""), "covid_7.png"


def whitespace_report(tmp):
    return lambda: _tokenize(" \t\n "), "covid_7.png"


def empty_report_in_lvit_table(tmp):
    _lvit(tmp, [["mask_a.png", "Left lung."], ["mask_b.png", "   "]])
    return lambda: load_lvit_split(str(tmp), "Train"), "mask_b.png"


def non_ascii_report(tmp):
    return lambda: _tokenize("Opacité bilatérale, 右肺下叶感染 — ≥2 foyers."), "covid_7.png"


def long_report(tmp):
    return lambda: _tokenize("bilateral ground glass opacity in the lower lobes " * 40), "covid_7.png"


def conflicting_duplicate_rows(tmp):
    _lvit(tmp, [["mask_a.png", "Left lung."], ["mask_a.png", "Right lung."], ["mask_b.png", "Both lungs."]])
    return lambda: load_lvit_split(str(tmp), "Train"), "mask_a.png"


def identical_duplicate_rows(tmp):
    _lvit(tmp, [["mask_a.png", "Left lung."], ["mask_a.png", "Left lung."], ["mask_b.png", "Both lungs."]])
    return lambda: load_lvit_split(str(tmp), "Train"), "mask_a.png"


def lvit_row_escaping_root(tmp):
    _lvit(tmp, [["mask_a.png", "Left lung."], ["../../../secret.png", "x"], ["mask_b.png", "Both lungs."]])
    return lambda: load_lvit_split(str(tmp), "Train"), "../../../secret.png"


def datalist_path_escaping_root(tmp):
    root = tmp / "dataset"
    root.mkdir()
    _png(tmp / "outside.png", np.zeros((8, 8)))
    datalist = root / "datalist.json"
    datalist.write_text(json.dumps({"test": [{"image": "../outside.png", "text": "Left lung."}]}))
    return lambda: load_text_datalist(str(datalist), key="test", base_dir=str(root)), "../outside.png"


def other_network_checkpoint(tmp):
    path = str(tmp / "vlsanet_model.pt")
    torch.save(_tiny_net("VLSANet").state_dict(), path)
    loader = CheckedCheckpointLoader(path, network=_tiny_net("TGCNet"))
    return loader, path


def other_network_named_checkpoint(tmp):
    path = str(tmp / "vlsanet_named.pt")
    torch.save({"network": "VLSANet", "model": {"w": torch.zeros(1)}}, path)
    return CheckedCheckpointLoader(path, network=torch.nn.Linear(1, 1), expected_network="TGCNet"), path


def weights_not_a_state_dict(tmp):
    path = str(tmp / "weights_list.pt")
    torch.save([torch.zeros(2), torch.ones(2)], path)
    return CheckedCheckpointLoader(path, network=torch.nn.Linear(2, 1)), path


def weights_dict_without_tensors(tmp):
    path = str(tmp / "metrics_only.pt")
    torch.save({"epoch": 3, "best_metric": 0.8}, path)
    return CheckedCheckpointLoader(path, network=torch.nn.Linear(2, 1)), path


def truncated_checkpoint(tmp):
    path = str(tmp / "model.pt")
    torch.save(torch.nn.Linear(64, 64).state_dict(), path)
    _truncate(path)
    return CheckedCheckpointLoader(path, network=torch.nn.Linear(64, 64)), path


CASES = [
    # id, case, error type, problem (regex), check of an accepted input
    ("corrupt_png", corrupt_png, ImageReadError, r"Cannot read image.*corrupt or truncated", None),
    ("corrupt_dicom", corrupt_dicom, ImageReadError, r"Cannot (read|decode).*DICOM|pixel data", None),
    ("dicom_no_decoder_reads", dicom_no_decoder_reads, ImageReadError, r"Cannot decode pixel data .*transfer syntax JPEG Extended .*1\.2\.840\.10008\.1\.2\.4\.51", None),  # noqa: B950
    ("corrupt_nifti", corrupt_nifti, ImageReadError, r"Cannot read image.*corrupt or truncated", None),
    ("image_not_2d_or_3d", not_2d_or_3d, ImageReadError, r"spatial dimension\(s\), expected 2 or 3", None),
    ("image_4d_nifti", four_d_nifti, ImageReadError, r"is 4D: 2 volumes .*expected one 2D or 3D image", None),
    ("rgba_image_into_grey_bundle", rgba_image_into_grey_bundle, None, None, "one_channel"),
    ("colour_mask", colour_mask, ImageReadError, r"colour channels that differ; expected a single-channel mask", None),
    ("grey_image_into_colour_bundle", grey_image_into_colour_bundle, None, None, "three_channels"),
    ("volume_into_2d_bundle", volume_into_2d_bundle, ImageReadError, r"is 3D .*expected a 2D image: slice volumes first", None),  # noqa: B950
    ("mask_image_size_mismatch", size_mismatch, ShapeMismatchError, r"mask_small.png' is 6 x 8 but image .*img.png' is 8 x 8 \(width x height\)", None),  # noqa: B950
    ("non_binary_mask", non_binary_mask, LabelValueError, r"is not binary.*values \[0, 3, 128, 255\]", None),
    ("label_out_of_range", out_of_range_label, LabelValueError, r"values \[7\].*outside the allowed", None),
    ("nan_inf_pixels", nan_inf_pixels, ImageReadError, r"2 NaN/Inf value", None),
    ("empty_report", empty_report, TextInputError, r"empty or whitespace-only", None),
    ("whitespace_report", whitespace_report, TextInputError, r"empty or whitespace-only", None),
    ("empty_report_lvit_table", empty_report_in_lvit_table, DatasetValidationError, r"empty or whitespace", None),
    ("non_ascii_report", non_ascii_report, None, None, "tokens"),
    ("report_longer_than_context", long_report, None, r"Text truncated to 77 tokens: \d+ tokens dropped", "tokens"),
    ("conflicting_duplicate_rows", conflicting_duplicate_rows, DatasetValidationError, r"different descriptions", None),
    ("identical_duplicate_rows", identical_duplicate_rows, None, r"2 identical rows collapsed", "records"),
    ("lvit_row_escaping_root", lvit_row_escaping_root, DatasetValidationError, r"escaping the dataset root", None),
    ("datalist_path_escaping_root", datalist_path_escaping_root, DatasetValidationError, r"escaping the dataset root", None),
    ("vlsanet_weights_into_tgcnet", other_network_checkpoint, CheckpointError, r"does not fit TGCNet.*another network", None),
    ("checkpoint_named_for_other_network", other_network_named_checkpoint, CheckpointError, r"saved for network 'VLSANet'.*'TGCNet'", None),  # noqa: B950
    ("weights_not_a_state_dict", weights_not_a_state_dict, CheckpointError, r"holds a list, expected a state dict", None),
    ("weights_dict_without_tensors", weights_dict_without_tensors, CheckpointError, r"contains no network weights", None),
    ("truncated_checkpoint", truncated_checkpoint, CheckpointError, r"corrupt or truncated", None),
]  # fmt: skip


@pytest.mark.parametrize("case,error,problem,check", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, caplog, case, error, problem, check):
    action, culprit = case(tmp_path)
    if error is not None:
        with pytest.raises(error) as info:
            action()
        message = str(info.value)
        assert culprit in message, f"message does not name {culprit!r}: {message}"
        assert problem is None or __import__("re").search(problem, message, flags=re.DOTALL), message
        assert "Traceback" not in message and len(message) < 3000
        return
    with caplog.at_level(logging.WARNING):
        result = action()
    if problem is not None:  # accepted, but said so
        assert re.search(problem, caplog.text), caplog.text
    if check == "tokens":
        tokens = result["text_tokens"]
        assert tokens.shape == (77,) and tokens.dtype == torch.long and int(tokens[0]) != 0 and int(tokens[1]) != 0
    elif check in ("one_channel", "three_channels"):
        channels = 1 if check == "one_channel" else 3
        assert result["image"].shape == (channels, 8, 8) and result["label"].shape == (1, 8, 8)
        assert float(result["image"].min()) == float(result["image"].max()) > 0  # grey stays grey
    elif check == "records":
        assert [r["name"] for r in result] == ["a", "b"] and result[0]["text"] == "Left lung."

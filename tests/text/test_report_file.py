"""Reports kept as text files beside their images: the path rule, SidecarReportd (MONAI Label's datastore items carry
only image and label), the TGC-Net bundle's preprocessing with it, and inference over a folder of images."""

import os

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai_ext.clip import get_clip_tokenizer
from monai_ext.data import inference_records
from monai_ext.text import SidecarReportd, sidecar_report_path
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = "monai-textseg-tiny-clip"


def write(path, text, encoding="utf-8"):
    with open(path, "w", encoding=encoding) as f:
        f.write(text)


def test_report_path_replaces_the_image_extension(tmp_path):
    assert sidecar_report_path("a/case_1.png") == "a/case_1.txt"
    assert sidecar_report_path("a/case_1.nii.gz") == "a/case_1.txt"
    assert sidecar_report_path("a/case_1.dcm", suffix=".report") == "a/case_1.report"
    series = tmp_path / "series_7"
    series.mkdir()
    assert sidecar_report_path(str(series) + "/") == str(series) + ".txt"  # a DICOM series folder


def test_missing_text_comes_from_the_file_beside_the_image(tmp_path):
    image = str(tmp_path / "case_1.png")
    write(tmp_path / "case_1.txt", "  Infection in the lower left lung.\n")
    load = SidecarReportd(keys="text")
    assert load({"image": image})["text"] == "Infection in the lower left lung."
    assert load({"image": image, "text": None})["text"] == "Infection in the lower left lung."
    assert load({"image": image, "text": "given"})["text"] == "given"  # a report in the item wins
    loaded = MetaTensor(torch.zeros(1, 2, 2), meta={"filename_or_obj": image})
    assert load({"image": loaded})["text"] == "Infection in the lower left lung."
    assert "text" not in load({"image": str(tmp_path / "case_2.png")})  # no file: left for DefaultTextd


def test_bad_report_files_are_named(tmp_path):
    write(tmp_path / "empty.txt", " \n")
    with pytest.raises(ValueError, match=r"empty\.txt.*is empty"):
        SidecarReportd(keys="text")({"image": str(tmp_path / "empty.png")})
    (tmp_path / "latin.txt").write_bytes("Infiltrat im rechten Oberlappen, ä".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.txt.*not UTF-8"):
        SidecarReportd(keys="text")({"image": str(tmp_path / "latin.png")})


def test_tgcnet_preprocessing_reads_the_report_of_a_datastore_item(tmp_path):
    """Items as MONAI Label's datastore gives them (image and label only): the report file when there is one, the
    bundle's default prompt otherwise."""
    for name in ("with_report", "without_report"):
        Image.fromarray(np.full((32, 32), 128, np.uint8)).save(tmp_path / f"{name}.png")
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / f"{name}_mask.png")
    report = "Bilateral pulmonary infection, upper left lung and lower right lung."
    write(tmp_path / "with_report.txt", report)
    parser = ConfigParser()
    parser.read_config(os.path.join(REPO, "bundles", "tgcnet", "configs", "train.json"))
    parser.update({"bundle_root": os.path.join(REPO, "bundles", "tgcnet"), "clip_model_name": TINY, "image_size": 32})
    preprocessing = parser.get_parsed_content("validate#preprocessing")
    tokenizer = get_clip_tokenizer(TINY)
    for name, expected in (("with_report", report), ("without_report", parser["default_prompt"])):
        item = preprocessing({"image": str(tmp_path / f"{name}.png"), "label": str(tmp_path / f"{name}_mask.png")})
        assert item["text"] == expected
        torch.testing.assert_close(torch.as_tensor(item["text_tokens"]), tokenizer([expected])[0])


def test_inference_over_a_folder_uses_report_files_and_skips_bad_ones(tmp_path):
    """The bundle's inference dataset: the report file where there is one, the default prompt where not, and an empty
    report file is one failed item named in the failures, not the end of the run."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(images / f"{name}.png")
    write(images / "a.txt", "Infection in the upper right lung.")
    write(images / "c.txt", "   ")
    configs = os.path.join(REPO, "bundles", "tgcnet", "configs")
    parser = ConfigParser()
    parser.read_config([os.path.join(configs, "inference.json"), os.path.join(configs, "demo_inference.json")])
    parser.update({"bundle_root": os.path.join(REPO, "bundles", "tgcnet"), "dataset_dir": str(images),
                   "output_dir": str(tmp_path / "out"), "image_size": 32})  # fmt: skip
    dataset = parser.get_parsed_content("dataset")
    texts = {os.path.basename(item["image"].meta["filename_or_obj"]): item["text"] for item in dataset}
    assert texts == {"a.png": "Infection in the upper right lung.", "b.png": parser["default_prompt"]}
    assert [os.path.basename(f["item"]) for f in dataset.failures] == ["c.png"]
    assert "c.txt" in dataset.failures[0]["message"] and "empty" in dataset.failures[0]["message"]
    shared = inference_records(str(images), text="one report for all")
    assert {r["text"] for r in shared} == {"one report for all"}

"""Synthetic stand-ins of LViT's QaTa-COV19 and MosMedData+ releases (monai_ext.demo.make_lvit_release)."""

import os

import numpy as np
import pandas as pd
import pytest
from lvit_files import read_png, tree_bytes
from monai_ext.demo import make_lvit_release


def test_qata_layout_names_and_shared_train_val_table(tmp_path):
    summary = make_lvit_release(tmp_path / "qata", "qata_cov19", n_train=3, n_val=2, n_test=1, image_size=48, seed=2)
    root = summary["out_dir"]
    assert summary["release"] == "QaTa-COV19" and summary["counts"] == {"Train": 3, "Val": 2, "Test": 1}
    assert sorted(os.listdir(os.path.join(root, "Train_Folder"))) == ["Train_Val_text.xlsx", "img", "labelcol"]
    assert sorted(os.listdir(os.path.join(root, "Val_Folder"))) == ["img", "labelcol"]
    assert sorted(os.listdir(os.path.join(root, "Val_Folder", "img"))) == ["covid_4.png", "covid_5.png"]
    assert sorted(os.listdir(os.path.join(root, "Val_Folder", "labelcol"))) == ["mask_covid_4.png", "mask_covid_5.png"]
    shared = pd.read_excel(os.path.join(root, "Train_Folder", "Train_Val_text.xlsx"))
    assert list(shared.columns) == ["Image", "Description"]
    assert list(shared["Image"]) == [f"mask_covid_{k}.png" for k in range(1, 6)]
    assert shared["Description"].str.contains("infect|lesion", case=False).all()
    test = pd.read_excel(os.path.join(root, "Test_Folder", "Test_text.xlsx"))
    assert list(test["Image"]) == ["mask_covid_6.png"]
    mask = read_png(root, "Test_Folder/labelcol/mask_covid_6.png")
    assert mask.shape == (48, 48) and set(np.unique(mask)) <= {0, 255} and mask.max() == 255
    assert read_png(root, "Test_Folder/img/covid_6.png").dtype == np.uint8


def test_mosmed_masks_carry_the_image_name_and_each_split_its_table(tmp_path):
    summary = make_lvit_release(tmp_path / "mosmed", "mosmeddata", n_train=2, n_val=1, n_test=1, image_size=48)
    root = summary["out_dir"]
    for prefix, names in {"Train": ["slice_0001.png", "slice_0002.png"], "Val": ["slice_0003.png"]}.items():
        folder = os.path.join(root, f"{prefix}_Folder")
        assert sorted(os.listdir(os.path.join(folder, "img"))) == names
        assert sorted(os.listdir(os.path.join(folder, "labelcol"))) == names
        assert list(pd.read_excel(os.path.join(folder, f"{prefix}_text.xlsx"))["Image"]) == names


def test_same_seed_same_images_masks_and_reports(tmp_path):
    first = make_lvit_release(tmp_path / "a", "mosmeddata", n_train=2, n_val=1, n_test=1, image_size=48, seed=5)
    second = make_lvit_release(tmp_path / "b", "mosmeddata", n_train=2, n_val=1, n_test=1, image_size=48, seed=5)
    pictures = {k: v for k, v in tree_bytes(first["out_dir"]).items() if k.endswith(".png")}
    assert pictures == {k: v for k, v in tree_bytes(second["out_dir"]).items() if k.endswith(".png")}
    table = "Train_Folder/Train_text.xlsx"
    reports = [pd.read_excel(os.path.join(s["out_dir"], table))["Description"].tolist() for s in (first, second)]
    assert reports[0] == reports[1]


def test_unknown_release_is_refused(tmp_path):
    with pytest.raises(ValueError, match="Unknown LViT release 'kvasir'"):
        make_lvit_release(tmp_path / "x", "kvasir")

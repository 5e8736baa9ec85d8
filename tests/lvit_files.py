"""Readers and checks shared by the tests of the LViT-layout synthetic chest X-ray generators (tests/demo)."""

import csv
import os

import numpy as np
from monai_ext.demo import LVIT_SPLITS
from PIL import Image


def tree_bytes(root):
    """Relative path -> bytes of every file under ``root``."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def read_png(root, relative):
    return np.asarray(Image.open(os.path.join(root, relative)))


def assert_lvit_tables(root, datalist):
    """Each split's ``<S>_text.csv`` lists its datalist items (mask file name, report) in order; images and masks
    lie where the LViT layout puts them, and masks are 0/255."""
    for key, prefix in LVIT_SPLITS.items():
        with open(os.path.join(root, f"{prefix}_Folder", f"{prefix}_text.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        assert [r["Image"] for r in rows] == [os.path.basename(item["label"]) for item in datalist[key]]
        assert [r["Description"] for r in rows] == [item["text"] for item in datalist[key]]
        for item in datalist[key]:
            assert item["image"] == f"{prefix}_Folder/img/{item['name']}.png"
            assert item["label"] == f"{prefix}_Folder/labelcol/mask_{item['name']}.png"
            assert set(np.unique(read_png(root, item["label"]))) <= {0, 255}

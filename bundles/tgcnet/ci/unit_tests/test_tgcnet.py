# Licensed under the Apache License, Version 2.0 (the "License"); see the bundle's LICENSE file.
"""Model Zoo unit test of the TGC-Net bundle: train (1 epoch), evaluate and infer on tiny synthetic data, each workflow
checked with ``ConfigWorkflow.check_properties``.

In the Model Zoo this file goes to ``ci/unit_tests/test_tgcnet.py`` and runs from the repository root
(``python ci/unit_tests/runner.py --b tgcnet``) with the bundle in ``models/tgcnet``; ``TGCNET_BUNDLE_ROOT`` points it
at another folder. It needs only the bundle's requirements: a tiny CLIP with random weights (the configuration the
bundle vendors) replaces ViT-B-16, so no weights are downloaded; the images are 72 x 80, the network sees 64 x 64.
"""

import csv
import glob
import os
import shutil
import sys
import tempfile
import unittest

import numpy as np
from monai.bundle import ConfigWorkflow
from PIL import Image

BUNDLE_ROOT = os.environ.get("TGCNET_BUNDLE_ROOT", "models/tgcnet")
SPLITS = {"Train": 4, "Val": 2, "Test": 2}
REPORTS = ("Bilateral pulmonary infection, two infected areas.", "Unilateral pulmonary infection, one infected area.")
TINY = {
    "clip_model_name": "monai-textseg-tiny-clip",
    "clip_pretrained": None,
    "clip_checkpoint": None,
    "image_size": 64,
    "device": "$torch.device('cpu')",
    "amp": False,
}


def test_order(test_name1, test_name2):
    def get_order(name):
        return 1 if "train" in name else 2 if "infer" in name else 3

    return get_order(test_name1) - get_order(test_name2)


def check_workflow(workflow: ConfigWorkflow) -> None:
    """Initialize, check the workflow's properties, run and finalize (what the Zoo's ci/unit_tests/utils.py does)."""
    workflow.initialize()
    problems = workflow.check_properties()
    if problems:
        raise ValueError(f"check properties for workflow failed: {problems}")
    workflow.run()
    workflow.finalize()


def write_lvit_split(root: str, split: str, count: int, rng: np.random.Generator) -> None:
    """``<split>_Folder/img/<name>.png``, ``labelcol/mask_<name>.png`` (0/255) and ``<split>_text.csv`` (LViT's layout)."""
    folder = os.path.join(root, f"{split}_Folder")
    os.makedirs(os.path.join(folder, "img"))
    os.makedirs(os.path.join(folder, "labelcol"))
    rows = []
    for i in range(count):
        name = f"{split.lower()}_{i}"
        image = rng.integers(0, 256, (80, 72), dtype=np.uint8)
        mask = np.zeros((80, 72), dtype=np.uint8)
        mask[8 + 4 * i : 40 + 4 * i, 10:30] = 255
        Image.fromarray(image).save(os.path.join(folder, "img", f"{name}.png"))
        Image.fromarray(mask).save(os.path.join(folder, "labelcol", f"mask_{name}.png"))
        rows.append({"Image": f"mask_{name}.png", "Description": REPORTS[i % 2]})
    with open(os.path.join(folder, f"{split}_text.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["Image", "Description"])
        writer.writeheader()
        writer.writerows(rows)


class TestTGCNet(unittest.TestCase):
    def setUp(self):
        # The bundle's configs import its code from scripts/ ("$import scripts"): the bundle root goes on sys.path.
        sys.path = [BUNDLE_ROOT] + sys.path
        self.work_dir = tempfile.mkdtemp()
        self.dataset_dir = os.path.join(self.work_dir, "data")
        rng = np.random.default_rng(0)
        for split, count in SPLITS.items():
            write_lvit_split(self.dataset_dir, split, count, rng)
        self.override = {
            **TINY,
            "bundle_root": BUNDLE_ROOT,
            "dataset_dir": self.dataset_dir,
            "ckpt_dir": os.path.join(self.work_dir, "models"),
            "output_dir": os.path.join(self.work_dir, "eval"),
            "log_dir": os.path.join(self.work_dir, "runs"),
        }

    def tearDown(self):
        sys.path.remove(BUNDLE_ROOT)
        shutil.rmtree(self.work_dir)

    def workflow(self, workflow_type, configs, **override):
        return ConfigWorkflow(
            workflow_type=workflow_type,
            config_file=[os.path.join(BUNDLE_ROOT, "configs", name) for name in configs],
            logging_file=os.path.join(BUNDLE_ROOT, "configs", "logging.conf"),
            meta_file=os.path.join(BUNDLE_ROOT, "configs", "metadata.json"),
            **{**self.override, **override},
        )

    def test_train_eval_config(self):
        train = {"max_epochs": 1, "batch_size": 2, "num_workers": 0, "cache_rate": 0.0, "lr_schedule": False}
        check_workflow(self.workflow("train", ["train.json"], **train))
        self.assertTrue(os.path.isfile(os.path.join(self.work_dir, "models", "model.pt")))
        # evaluate.json overrides train.json, hence the "train" workflow type (as the Zoo's tests do).
        check_workflow(self.workflow("train", ["train.json", "evaluate.json"], **train))
        reports = glob.glob(os.path.join(self.work_dir, "eval", "**", "*.csv"), recursive=True)
        self.assertTrue(reports, "evaluate.json wrote no metrics table")

    def test_infer_config(self):
        images = os.path.join(self.dataset_dir, "Test_Folder", "img")
        override = {"dataset_dir": images, "text": REPORTS[0], "output_dir": os.path.join(self.work_dir, "pred")}
        override["handlers#0#_disabled_"] = True  # no trained weights: the network's initial ones
        check_workflow(self.workflow("infer", ["inference.json"], **override))
        masks = sorted(glob.glob(os.path.join(self.work_dir, "pred", "masks", "*_mask.png")))
        self.assertEqual([os.path.basename(m) for m in masks], ["test_0_mask.png", "test_1_mask.png"])
        self.assertEqual(np.asarray(Image.open(masks[0])).shape, (80, 72))  # the input's size, not the network's


if __name__ == "__main__":
    loader = unittest.TestLoader()
    loader.sortTestMethodsUsing = test_order
    unittest.main(testLoader=loader)

# Licensed under the Apache License, Version 2.0 (the "License"); see the bundle's LICENSE file.
"""Model Zoo unit test of the VLSA-Net bundle (fundus task): train (1 epoch), evaluate and infer on tiny synthetic
data, each workflow checked with ``ConfigWorkflow.check_properties``.

In the Model Zoo this file goes to ``ci/unit_tests/test_vlsanet.py`` and runs from the repository root
(``python ci/unit_tests/runner.py --b vlsanet``) with the bundle in ``models/vlsanet``; ``VLSANET_BUNDLE_ROOT`` points
it at another folder. It needs only the bundle's requirements: a tiny CLIP with random weights (the configuration the
bundle vendors) replaces ViT-B-16, so no weights are downloaded; the images are 72 x 80, the network sees 64 x 64.
"""

import glob
import json
import os
import shutil
import sys
import tempfile
import unittest

import numpy as np
from monai.bundle import ConfigWorkflow
from PIL import Image

BUNDLE_ROOT = os.environ.get("VLSANET_BUNDLE_ROOT", "models/vlsanet")
SPLITS = {"training": 6, "test": 2}
SHAPE = (80, 72)  # rows, columns
TINY = {
    "clip_model_name": "monai-textseg-tiny-clip",
    "clip_pretrained": None,
    "clip_checkpoint": None,
    "image_size": 64,
    "decoder_channels": 16,
    "num_bases": 8,
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


def fundus_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An RGB picture with a bright disc and a brighter cup, and its label (0 background, 1 disc rim, 2 cup)."""
    rows, columns = np.mgrid[: SHAPE[0], : SHAPE[1]]
    centre = rng.uniform(28, 44, size=2)
    radius = np.hypot(rows - centre[0], columns - centre[1])
    label = np.where(radius < 7, 2, np.where(radius < 16, 1, 0)).astype(np.uint8)
    image = rng.integers(0, 60, (*SHAPE, 3)) + 90 * label[..., None]
    return image.clip(0, 255).astype(np.uint8), label


def write_dataset(root: str, rng: np.random.Generator) -> None:
    """``images/``, ``masks/`` and ``datalist.json`` with the training and test lists, as the bundle reads them."""
    os.makedirs(os.path.join(root, "images"))
    os.makedirs(os.path.join(root, "masks"))
    datalist = {}
    for key, count in SPLITS.items():
        datalist[key] = []
        for i in range(count):
            image, label = fundus_pair(rng)
            item = {"image": f"images/{key}_{i}.png", "label": f"masks/{key}_{i}.png"}
            Image.fromarray(image).save(os.path.join(root, item["image"]))
            Image.fromarray(label).save(os.path.join(root, item["label"]))
            datalist[key].append(item)
    with open(os.path.join(root, "datalist.json"), "w", encoding="utf-8") as f:
        json.dump(datalist, f, indent=2)


class TestVLSANet(unittest.TestCase):
    def setUp(self):
        # The bundle's configs import its code from scripts/ ("$import scripts"): the bundle root goes on sys.path.
        sys.path = [BUNDLE_ROOT] + sys.path
        self.work_dir = tempfile.mkdtemp()
        self.dataset_dir = os.path.join(self.work_dir, "data")
        write_dataset(self.dataset_dir, np.random.default_rng(0))
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
        train = {"max_epochs": 1, "batch_size": 2, "num_workers": 0, "cache_rate": 0.0}
        check_workflow(self.workflow("train", ["train.json"], **train))
        self.assertTrue(os.path.isfile(os.path.join(self.work_dir, "models", "model.pt")))
        # evaluate.json overrides train.json, hence the "train" workflow type (as the Zoo's tests do).
        check_workflow(self.workflow("train", ["train.json", "evaluate.json"], **train))
        reports = glob.glob(os.path.join(self.work_dir, "eval", "**", "*.csv"), recursive=True)
        self.assertTrue(reports, "evaluate.json wrote no metrics table")

    def test_infer_config(self):
        images = os.path.join(self.dataset_dir, "images")
        override = {
            "dataset_dir": images,
            "image_glob": "test_*.png",
            "output_dir": os.path.join(self.work_dir, "pred"),
        }
        override["handlers#0#_disabled_"] = True  # no trained weights: the network's initial ones
        check_workflow(self.workflow("infer", ["inference.json"], **override))
        masks = sorted(glob.glob(os.path.join(self.work_dir, "pred", "masks", "*_mask.png")))
        self.assertEqual([os.path.basename(m) for m in masks], ["test_0_mask.png", "test_1_mask.png"])
        mask = np.asarray(Image.open(masks[0]))
        self.assertEqual(mask.shape, SHAPE)  # the input's size, not the network's
        self.assertTrue(set(np.unique(mask)) <= {0, 1, 2})


if __name__ == "__main__":
    loader = unittest.TestLoader()
    loader.sortTestMethodsUsing = test_order
    unittest.main(testLoader=loader)

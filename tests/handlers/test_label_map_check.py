"""The label map checked inside VLSA-Net's own training: LabelMapCheck stops an engine before its first iteration
when the map contradicts the dataset's label files, and train.json runs it unless check_label_map is off."""

import json
import os
import re
from types import SimpleNamespace

import numpy as np
import pytest
from ignite.engine import Engine
from monai.bundle import ConfigWorkflow
from monai_ext.data import LabelMapError
from monai_ext.handlers import LabelMapCheck
from PIL import Image

BUNDLE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bundles", "vlsanet"
)


def _ccsdg_masks(folder, n=4, size=32):
    """RIGA+ masks as CCSDG reads them (0 background, 255 disc rim, 128 cup) and grey images; returns the records."""
    yy, xx = np.mgrid[:size, :size]
    records = []
    for i in range(n):
        r = np.hypot(yy - size / 2 - i % 2, xx - size / 2)
        mask = np.zeros((size, size), np.uint8)
        mask[r < size / 4], mask[r < size / 10] = 255, 128
        os.makedirs(folder / "images", exist_ok=True)
        os.makedirs(folder / "masks", exist_ok=True)
        Image.fromarray(np.full((size, size, 3), 90 + 10 * i, np.uint8)).save(folder / "images" / f"{i}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{i}.png")
        records.append({"image": f"images/{i}.png", "label": f"masks/{i}.png"})
    return records


def _engine(records):
    engine = Engine(lambda engine, batch: None)
    engine.data_loader = SimpleNamespace(dataset=SimpleNamespace(data=records))
    return engine


def test_the_check_runs_when_the_engine_starts(tmp_path):
    records = [{**r, "label": str(tmp_path / r["label"])} for r in _ccsdg_masks(tmp_path)]
    refuge = _engine(records)
    LabelMapCheck([255, 128, 0], [0, 1, 2], task="fundus").attach(refuge)
    with pytest.raises(
        LabelMapError, match="(?s)Label map 'refuge' contradicts the fundus label files.*--label_map ccsdg"
    ):
        refuge.run([0], max_epochs=1)
    ccsdg = _engine(records)
    LabelMapCheck([255, 128], [1, 2], task="fundus").attach(ccsdg)
    ccsdg.run([0], max_epochs=1)
    assert ccsdg.state.iteration == 1
    with pytest.raises(ValueError, match="differ in length"):
        LabelMapCheck([255, 128], [1])
    bare = Engine(lambda engine, batch: None)
    LabelMapCheck().attach(bare)
    with pytest.raises(TypeError, match="data_loader.dataset holds its records"):
        bare.run([0], max_epochs=1)
    unlabelled = _engine([{"image": "a.png"}])
    LabelMapCheck().attach(unlabelled)
    with pytest.raises(ValueError, match="name no label files"):
        unlabelled.run([0], max_epochs=1)


def _train(tmp_path, **overrides):
    workflow = ConfigWorkflow(
        config_file=[os.path.join(BUNDLE, "configs", n) for n in ("train.json", "demo.json")],
        workflow_type="train",
        bundle_root=BUNDLE,
        datalist_file=str(tmp_path / "data" / "datalist.json"),
        ckpt_dir=str(tmp_path / "models"),
        log_dir=str(tmp_path / "runs"),
        image_size=32,
        max_epochs=1,
        batch_size=2,
        label_orig_values=[255, 128, 0],  # the refuge map: every value occurs, ValidateLabelValuesd passes
        label_target_values=[0, 1, 2],
        **overrides,
    )
    workflow.initialize()
    try:
        workflow.run()
    finally:
        workflow.finalize()


def test_vlsanet_training_stops_on_a_map_that_contradicts_its_labels(tmp_path):
    records = _ccsdg_masks(tmp_path / "data")
    with open(tmp_path / "data" / "datalist.json", "w") as f:
        json.dump({"training": records}, f)
    with pytest.raises(RuntimeError) as caught:  # MONAI's config expression wraps what the run raised
        _train(tmp_path)
    cause = caught.value
    while cause is not None and not isinstance(cause, LabelMapError):
        cause = cause.__cause__
    assert isinstance(cause, LabelMapError)
    assert re.search("(?s)Label map 'refuge'.*under .*masks\\): 0.png.*The map 'ccsdg'", str(cause))
    assert not (tmp_path / "models" / "model.pt").exists()  # stopped before any training step
    _train(tmp_path, check_label_map=False)  # switched off, the same (wrong) map trains silently
    assert (tmp_path / "models" / "model.pt").is_file()

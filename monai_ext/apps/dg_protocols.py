"""Published single-source domain-generalisation protocols: what ``scripts/evaluate_dg.py --protocol`` fixes so that
a run on the real release lands in the published table (splits, label map, input size, metric aggregation).

Each protocol follows the public code of the method its table comes from (read, not copied):

- ``mscmrseg_slaug``: MS-CMRSeg bSSFP -> LGE as SLAug (github.com/Kaiseem/SLAug) and LG_SDG
  (github.com/ShahinaKK/LG_SDG, which runs SLAug's code) evaluate it: SLAug's preprocessed release
  (``dataloaders/CardiacDataset.py``: ``processed/{bSSFP,LGE}/image_<id>.nii.gz``, labels 1 myocardium, 2 LV, 3 RV),
  patient-level split bSSFP 1-35 train / 36-45 validation, LGE 6-45 test; Dice per 3D volume, averaged over volumes,
  background left out (``engine.py``: ``eval_list_wrapper``); slices at the release's own size (``test.py`` does not
  resize).
- ``riga_ccsdg``: RIGA+ as CCSDG (github.com/ShishuaiHu/CCSDG) evaluates it: source BinRushed or Magrabia, targets
  MESSIDOR Base1/2/3 from the release's lists (``<site>_train.csv``, ``<site>_test.csv``), 512x512
  (``--patch_size`` default; ``RIGA_labeled_set`` resizes image and mask), masks read as 0 background, > 0 disc,
  128 cup (``RIGA_dataloader.py``), Dice per image for disc and cup (``utils/metrics/dice.py``, one result per
  target list).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
from monai_ext.data.benchmarks import prepare_ccsdg_riga, prepare_slaug_mscmrseg
from monai_ext.data.datalist import datalist_keys, load_text_datalist

__all__ = ["DGProtocol", "DG_PROTOCOLS", "slice_size"]


@dataclass(frozen=True)
class DGProtocol:
    """What a published DG protocol fixes.

    Attributes:
        name: the ``--protocol`` name.
        task: ``"fundus"`` or ``"cardiac"``.
        description: one line for logs and ``dg_results.json``.
        prepare: ``(data_root, work_dir) -> {domain: {"datalist", "base_dir"}}`` reading the release with the
            protocol's splits.
        sources: the source domains the protocol is run with (the first is the default).
        targets: the target domains.
        label_map: the name in :data:`monai_ext.data.LABEL_MAPS` of the release's label encoding.
        image_size: the network's input size; ``None``: the release's own slice size (no resizing).
        target_key: the datalist key of the target images tested on.
        aggregation: ``"per volume"`` or ``"per image"``.
        overrides: further bundle config overrides (train/validation keys, per-volume evaluation).
        follows: the public code each fixed setting was read from.
    """

    name: str
    task: str
    description: str
    prepare: Callable[[str, str], dict[str, dict[str, str]]]
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    label_map: str
    image_size: int | None
    target_key: str
    aggregation: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    follows: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        """The protocol's settings as JSON-ready values."""
        return {
            "name": self.name,
            "task": self.task,
            "description": self.description,
            "sources": list(self.sources),
            "targets": list(self.targets),
            "label_map": self.label_map,
            "image_size": self.image_size if self.image_size is not None else "the release's slice size",
            "target_key": self.target_key,
            "aggregation": self.aggregation,
            "overrides": dict(self.overrides),
            "follows": list(self.follows),
        }


def _prepare_mscmrseg(data_root: str, work_dir: str) -> dict[str, dict[str, str]]:
    return prepare_slaug_mscmrseg(data_root, os.path.join(work_dir, "slices"))


DG_PROTOCOLS: dict[str, DGProtocol] = {
    "mscmrseg_slaug": DGProtocol(
        name="mscmrseg_slaug",
        task="cardiac",
        description="MS-CMRSeg bSSFP -> LGE as SLAug / LG_SDG: patients bSSFP 1-35 train, 36-45 validation, LGE 6-45 "
        "test; per-volume 3D Dice and HD95 averaged over volumes, background excluded",
        prepare=_prepare_mscmrseg,
        sources=("bSSFP",),
        targets=("LGE",),
        label_map="slaug",
        image_size=None,
        target_key="test",
        aggregation="per volume",
        overrides={"train_key": "training", "val_key": "validation", "eval_per_volume": True},
        follows=(
            "Kaiseem/SLAug dataloaders/CardiacDataset.py (LABEL_NAME, __get_scanids, file names)",
            "Kaiseem/SLAug engine.py (prediction_wrapper, eval_list_wrapper: Dice per volume, classes 1-3)",
            "Kaiseem/SLAug configs/efficientUnet_bSSFP_to_LEG.yaml (train bSSFP, validation bSSFP, test LGE)",
            "ShahinaKK/LG_SDG SLAug/ (the same loader and split)",
        ),
    ),
    "riga_ccsdg": DGProtocol(
        name="riga_ccsdg",
        task="fundus",
        description="RIGA+ as CCSDG: train on BinRushed or Magrabia (<site>_train.csv; <site>_test.csv validates), "
        "test on MESSIDOR_Base1/2/3_test.csv; 512x512; per-image Dice of disc (label > 0) and cup (128)",
        prepare=prepare_ccsdg_riga,
        sources=("BinRushed", "Magrabia"),
        targets=("MESSIDOR_Base1", "MESSIDOR_Base2", "MESSIDOR_Base3"),
        label_map="ccsdg",
        image_size=512,
        target_key="test",
        aggregation="per image",
        overrides={"train_key": "training", "val_key": "test", "eval_per_volume": False},
        follows=(
            "ShishuaiHu/CCSDG ccsdg/datasets/dataloaders/RIGA_dataloader.py (512x512 resize, > 0 disc, 128 cup)",
            "ShishuaiHu/CCSDG ccsdg/datasets/utils/convert_csv_to_list.py (CSV rows, rater-1 masks <name>-1.tif)",
            "ShishuaiHu/CCSDG ccsdg/inference/inference_nets/inference_unet_ccsdg.py (per-image disc/cup Dice)",
            "ShahinaKK/LG_SDG CCSDG/train.sh (<source>_train.csv, MESSIDOR_Base1/2/3_test.csv)",
        ),
    ),
}


def slice_size(domain: Mapping[str, str]) -> tuple[int, int]:
    """The in-plane size of the first image of a prepared domain's datalist (``{"datalist", "base_dir"}``), read
    from its NIfTI header."""
    for key in datalist_keys(domain["datalist"]):
        records = load_text_datalist(domain["datalist"], key=key, base_dir=domain.get("base_dir"))
        if records:
            return tuple(int(s) for s in nib.load(records[0]["image"]).shape[:2])
    raise ValueError(f"Datalist '{domain['datalist']}' lists no images.")

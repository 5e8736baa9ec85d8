"""Tiny synthetic stand-ins for LViT's QaTa-COV19 and MosMedData+ releases, laid out as a user has them after
following LViT's instructions: the same folders, file naming, formats (PNG images and masks, Excel text tables) and
table columns, so that a dry run takes the code path the real data take.

- QaTa-COV19 as LViT's own training code reads it (``train_model.py`` and ``Load_Dataset.py`` of HUANGLIZI/LViT, task
  ``Covid19``): images ``covid_<k>.png``, masks ``mask_covid_<k>.png`` (the image name with ``mask_`` in front, the
  naming of the QaTa-COV19 release), one table ``Train_Folder/Train_Val_text.xlsx`` with the reports of the Train and
  Val folders, and ``Test_Folder/Test_text.xlsx``.
- MosMedData+: a mask carries its image's own name and each split has its table (``Train_Folder/Train_text.xlsx``,
  ``Val_Folder/Val_text.xlsx``, ``Test_Folder/Test_text.xlsx``), the layout of LViT's README.

Tables have the columns ``Image`` (the mask file name) and ``Description`` (the report). The images are the synthetic
report-referred chest X-rays of :func:`~monai_ext.demo.make_chest_xray_dataset`; only the layout imitates the releases.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .chest_xray import LVIT_SPLITS, draw_referred_sample, lvit_split_counts, mask_for_zones
from .common import MARKER_FILE, check_image_size, sample_rng, staged_output_dir, write_json, write_png

__all__ = ["LViTRelease", "LVIT_RELEASES", "make_lvit_release"]

# Random-key offset of the release samples (other generators of this package use 0 and 100).
RELEASE_KEY = 200


@dataclass(frozen=True)
class LViTRelease:
    """File naming and text tables of one dataset in LViT's layout.

    Attributes:
        name: the dataset's published name.
        image_name: image file name of sample ``k`` (1-based over the whole release), e.g. ``"covid_{k}.png"``.
        mask_prefix: put in front of the image name to name its mask (``""``: the same name).
        shared_train_val_table: one ``Train_Folder/Train_Val_text.xlsx`` for Train and Val instead of one per split.
    """

    name: str
    image_name: str
    mask_prefix: str
    shared_train_val_table: bool


LVIT_RELEASES = {
    "qata_cov19": LViTRelease("QaTa-COV19", "covid_{k}.png", "mask_", shared_train_val_table=True),
    "mosmeddata": LViTRelease("MosMedData+", "slice_{k:04d}.png", "", shared_train_val_table=False),
}


def _write_table(path: str, rows: list[tuple[str, str]]) -> None:
    """An Excel text table with the columns Image (mask file name) and Description (report)."""
    # Imported here: the demo package goes into Model Zoo archives, whose bundles do not list pandas.
    import pandas as pd

    pd.DataFrame(rows, columns=["Image", "Description"]).to_excel(path, index=False, engine="openpyxl")


def make_lvit_release(
    out_dir: str | os.PathLike,
    release: str = "qata_cov19",
    n_train: int = 8,
    n_val: int = 2,
    n_test: int = 2,
    image_size: int = 224,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Write a synthetic dataset in the layout of one LViT release (see the module docstring).

    Args:
        out_dir: output folder; must be missing or empty unless ``overwrite`` (which replaces an earlier synthetic
            dataset, never another folder).
        release: a key of :data:`LVIT_RELEASES`: ``"qata_cov19"`` or ``"mosmeddata"``.
        n_train, n_val, n_test: number of images per split.
        image_size: side of the square images in pixels (>= 32).
        seed: random seed; images, masks and reports are the same for the same seed (the Excel files also hold the
            time they were saved, so their bytes differ between runs).
        overwrite: replace an existing synthetic dataset in ``out_dir``.

    Returns:
        summary dict: ``out_dir``, ``release`` (the dataset's name), ``counts`` per split (LViT's folder prefixes
        Train/Val/Test), ``tables`` (their paths relative to ``out_dir``).

    Example::

        make_lvit_release("dry_run/QaTa-COV19", "qata_cov19", n_train=4, n_val=2, n_test=2, image_size=64)
        # then: python -m monai.bundle run --config_file "['configs/train.json','configs/protocol_qata_cov19.json']"
        #       --dataset_dir dry_run/QaTa-COV19 --split_sizes "{'Train': 4, 'Val': 2, 'Test': 2}" ...
    """
    if release not in LVIT_RELEASES:
        raise ValueError(f"Unknown LViT release '{release}'; use one of {sorted(LVIT_RELEASES)}.")
    spec = LVIT_RELEASES[release]
    counts = lvit_split_counts(n_train, n_val, n_test)
    image_size = check_image_size(image_size)
    out_dir = os.path.abspath(os.fspath(out_dir))
    rows: dict[str, list[tuple[str, str]]] = {}
    with staged_output_dir(out_dir, overwrite=overwrite) as staging:
        k = 0
        for split_index, (key, prefix) in enumerate(LVIT_SPLITS.items()):
            folder = os.path.join(staging, f"{prefix}_Folder")
            os.makedirs(os.path.join(folder, "img"))
            os.makedirs(os.path.join(folder, "labelcol"))
            rows[prefix] = []
            for index in range(counts[key]):
                k += 1
                rng = sample_rng(seed, RELEASE_KEY + split_index, index)
                image, zone_map, _, named, report = draw_referred_sample(rng, image_size)
                image_name = spec.image_name.format(k=k)
                mask_name = spec.mask_prefix + image_name
                write_png(image, os.path.join(folder, "img", image_name))
                write_png(
                    mask_for_zones(zone_map, named).astype(np.uint8) * 255, os.path.join(folder, "labelcol", mask_name)
                )
                rows[prefix].append((mask_name, report))
        if spec.shared_train_val_table:
            tables = {
                "Train_Folder/Train_Val_text.xlsx": rows["Train"] + rows["Val"],
                "Test_Folder/Test_text.xlsx": rows["Test"],
            }
        else:
            tables = {f"{prefix}_Folder/{prefix}_text.xlsx": split_rows for prefix, split_rows in rows.items()}
        for path, table_rows in tables.items():
            _write_table(os.path.join(staging, path), table_rows)
        summary = {
            "generator": "make_lvit_release",
            "release": spec.name,
            "parameters": {"release": release, "image_size": image_size, "seed": int(seed)},
            "counts": {prefix: len(split_rows) for prefix, split_rows in rows.items()},
            "tables": sorted(tables),
        }
        write_json(summary, os.path.join(staging, MARKER_FILE))
    return {**summary, "out_dir": out_dir}

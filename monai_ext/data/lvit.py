"""Reader for the LViT layout of QaTa-COV19 and MosMedData+ (Li et al., "LViT", IEEE TMI 2023).

Layout of one split ``S`` in ``{Train, Val, Test}``::

    root/S_Folder/img/<name>.png               image
    root/S_Folder/labelcol/mask_<name>.png     binary mask
    root/S_Folder/S_text.xlsx                  table with columns Image (the MASK file name) and Description
                                               (.csv is accepted too, and the table may also sit in root/)

A row naming the image file instead of ``mask_<name>`` is matched to that mask too, and a mask may carry the image's
own name (MosMedData+ names image and mask alike). The description column may also be called ``Text``. Train and Val
may share one table, ``Train_Folder/Train_Val_text.xlsx``, as LViT's own training code reads QaTa-COV19's reports
(``train_model.py``); its rows naming the other split's masks are then left to that split.

Every split is checked as a whole before anything is returned; the problems are collected into one
:class:`~monai_ext.data.validation.ValidationReport`.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict

from monai_ext.data.validation import DatasetValidationError, ValidationReport
from monai_ext.io import PICTURE_SUFFIXES, PathOutsideRootError, check_within_root

__all__ = ["LVIT_MASK_PREFIX", "lvit_split_name", "find_lvit_text_table", "validate_lvit_split", "load_lvit_split"]

logger = logging.getLogger(__name__)

LVIT_MASK_PREFIX = "mask_"
REQUIRED_COLUMNS = ("Image", "Description")
# Accepted names of each required column, matched case-insensitively, the first present wins.
COLUMN_NAMES = {"Image": ("Image",), "Description": ("Description", "Text")}
# LViT's training code reads one table of QaTa-COV19's reports for Train and Val (train_model.py, task Covid19).
SHARED_TABLE = "Train_Val_text"
SHARED_TABLE_SPLITS = ("Train", "Val")
TABLE_SUFFIXES = (".xlsx", ".csv")
_SPLIT_ALIASES = {
    "train": "Train",
    "training": "Train",
    "val": "Val",
    "valid": "Val",
    "validation": "Val",
    "test": "Test",
    "testing": "Test",
}


def lvit_split_name(split: str) -> str:
    """LViT folder prefix for a split: ``"train"``/``"training"`` -> ``"Train"``, ``"validation"`` -> ``"Val"``, ...

    Raises:
        ValueError: an unknown split name.
    """
    name = _SPLIT_ALIASES.get(str(split).strip().lower())
    if name is None:
        raise ValueError(f"Unknown LViT split '{split}'; use one of Train, Val, Test (or {sorted(_SPLIT_ALIASES)}).")
    return name


def _table_candidates(root: str, split: str) -> list[str]:
    folder = os.path.join(root, f"{split}_Folder")
    names = [f"{split}_text"] + ([SHARED_TABLE] if split in SHARED_TABLE_SPLITS else [])
    bases = {f"{split}_text": (folder, root), SHARED_TABLE: (os.path.join(root, "Train_Folder"), root)}
    return [os.path.join(base, name + suffix) for name in names for base in bases[name] for suffix in TABLE_SUFFIXES]


def find_lvit_text_table(root: str, split: str) -> str | None:
    """Path of the text table of ``split``: ``S_Folder/S_text.xlsx``, ``S_Folder/S_text.csv``, ``S_text.xlsx`` or
    ``S_text.csv`` under ``root``, for Train and Val then ``Train_Folder/Train_Val_text.xlsx`` (or ``.csv``, or in
    ``root``), the first that exists, or None."""
    split = lvit_split_name(split)
    for candidate in _table_candidates(os.fspath(root), split):
        if os.path.isfile(candidate):
            return candidate
    return None


def _read_table(path: str):
    """Read an .xlsx (openpyxl) or .csv table with every cell as a string and empty cells as ``""``."""
    import pandas as pd

    if path.lower().endswith(".xlsx"):
        table = pd.read_excel(path, dtype=str, na_filter=False, engine="openpyxl")
    else:
        table = pd.read_csv(path, dtype=str, na_filter=False, encoding="utf-8-sig")
    table.columns = [str(column).strip() for column in table.columns]
    return table


def _find_columns(columns: list[str]) -> dict[str, str]:
    """Required column -> actual column name, matching the names of :data:`COLUMN_NAMES` case-insensitively."""
    by_lower = {column.lower(): column for column in columns}
    found = {}
    for required in REQUIRED_COLUMNS:
        present = [by_lower[name.lower()] for name in COLUMN_NAMES[required] if name.lower() in by_lower]
        if present:
            found[required] = present[0]
    return found


def _list_files(folder: str) -> list[str]:
    """Image files directly in ``folder`` (hidden files and other suffixes are ignored), sorted."""
    return sorted(
        entry.name
        for entry in os.scandir(folder)
        if entry.is_file() and not entry.name.startswith(".") and entry.name.lower().endswith(PICTURE_SUFFIXES)
    )


def _image_for_mask(mask_name: str, images: set[str], images_by_stem: dict[str, list[str]]) -> str | None:
    """Image file of a mask: the mask name without ``mask_``; else the unique image with that stem (other suffix)."""
    image_name = mask_name[len(LVIT_MASK_PREFIX) :] if mask_name.startswith(LVIT_MASK_PREFIX) else mask_name
    if image_name in images:
        return image_name
    candidates = images_by_stem.get(os.path.splitext(image_name)[0], [])
    return candidates[0] if len(candidates) == 1 else None


def validate_lvit_split(root: str | os.PathLike, split: str) -> ValidationReport:
    """Check one LViT split and return every problem found together with the records that are valid.

    Args:
        root: dataset folder holding ``Train_Folder``, ``Val_Folder``, ``Test_Folder``.
        split: ``"Train"``, ``"Val"``, ``"Test"`` (or ``"training"``, ``"validation"``, ``"test"``).

    Returns:
        a :class:`ValidationReport` whose ``records`` are ``{"image", "label", "text", "name"}`` dicts with absolute
        paths, sorted by ``name`` (the image file name without suffix). Identical duplicate rows in the table are
        collapsed and noted in ``warnings``.

    Raises:
        FileNotFoundError: ``root`` is not a folder.

    Example::

        report = validate_lvit_split("/data/QaTa-COV19", "Test")
        print(report.format())
    """
    root = os.path.abspath(os.fspath(root))
    split = lvit_split_name(split)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"LViT dataset root '{root}' is not a folder.")
    report = ValidationReport(source=f"{root} [{split}]")
    split_dir = os.path.join(root, f"{split}_Folder")
    image_dir, mask_dir = os.path.join(split_dir, "img"), os.path.join(split_dir, "labelcol")

    listings: dict[str, list[str]] = {}
    for folder in (image_dir, mask_dir):
        listings[folder] = []
        if not os.path.isdir(folder):
            present = sorted(os.listdir(os.path.dirname(folder))) if os.path.isdir(os.path.dirname(folder)) else []
            report.add("missing_folder", f"{folder} (present: {present or 'nothing'})")
            continue
        for name in _list_files(folder):
            try:  # a symbolic link leading out of the dataset
                check_within_root(os.path.join(folder, name), root)
            except PathOutsideRootError:
                report.add("path_outside_root", os.path.relpath(os.path.join(folder, name), root))
            else:
                listings[folder].append(name)
    images, masks = set(listings[image_dir]), listings[mask_dir]
    images_by_stem: dict[str, list[str]] = defaultdict(list)
    for image_name in sorted(images):
        images_by_stem[os.path.splitext(image_name)[0]].append(image_name)

    mask_to_image: dict[str, str] = {}
    for mask_name in masks:
        image_name = _image_for_mask(mask_name, images, images_by_stem)
        if image_name is None:
            report.add("mask_without_image", mask_name)
        else:
            mask_to_image[mask_name] = image_name
    for image_name in sorted(images - set(mask_to_image.values())):
        report.add("image_without_mask", image_name)

    texts = _read_descriptions(root, split, mask_dir, set(masks), report)

    for mask_name, image_name in sorted(mask_to_image.items()):
        if texts is not None and mask_name not in texts:
            report.add("mask_without_text", mask_name)
        text = (texts or {}).get(mask_name)
        if not text:  # missing, empty or conflicting: already reported
            continue
        name = os.path.splitext(image_name)[0]
        report.records.append(
            {
                "image": os.path.join(image_dir, image_name),
                "label": os.path.join(mask_dir, mask_name),
                "text": text,
                "name": name,
            }
        )
    report.records.sort(key=lambda record: record["name"])
    return report


def _read_descriptions(
    root: str, split: str, mask_dir: str, masks: set[str], report: ValidationReport
) -> dict[str, str] | None:
    """Mask file name -> description from the split's text table; None when the table cannot be used at all.

    Rows that are empty, conflicting or point outside ``root`` are reported and map to ``""`` (so they are not also
    reported as masks without text).
    """
    table_path = find_lvit_text_table(root, split)
    if table_path is None:
        report.add("missing_table", ", ".join(_table_candidates(root, split)))
        return None
    others = [path for path in _table_candidates(root, split) if os.path.isfile(path) and path != table_path]
    if others:
        report.warnings.append(f"using {table_path}; ignoring {', '.join(others)}")
    try:
        table = _read_table(table_path)
    except Exception as error:  # pandas/openpyxl raise many types for corrupt or non-table files
        report.add("unreadable_table", f"{table_path}: {type(error).__name__}: {error}")
        return None
    sibling_masks: set[str] = set()
    if os.path.basename(table_path).startswith(SHARED_TABLE + "."):
        (sibling,) = (other for other in SHARED_TABLE_SPLITS if other != split)
        sibling_dir = os.path.join(root, f"{sibling}_Folder", "labelcol")
        sibling_masks = set(_list_files(sibling_dir)) if os.path.isdir(sibling_dir) else set()
    columns = _find_columns(list(table.columns))
    if len(columns) < len(REQUIRED_COLUMNS):
        missing = [" or ".join(COLUMN_NAMES[column]) for column in REQUIRED_COLUMNS if column not in columns]
        report.add("missing_columns", f"{table_path}: missing {missing}; columns found: {list(table.columns)}")
        return None

    rows: dict[str, list[str]] = defaultdict(list)
    for row_number, (entry, description) in enumerate(
        zip(table[columns["Image"]], table[columns["Description"]]), start=2  # row 1 is the header
    ):
        entry, description = str(entry).strip(), str(description).strip()
        if not entry:
            report.add("text_without_files", f"{os.path.basename(table_path)} row {row_number}: empty Image cell")
            continue
        candidate = os.path.normpath(os.path.join(mask_dir, entry))
        try:
            check_within_root(candidate, root)
        except PathOutsideRootError:
            report.add("path_outside_root", f"{os.path.basename(table_path)} row {row_number}: '{entry}'")
            continue
        mask_name = os.path.relpath(candidate, mask_dir)
        if mask_name not in masks and LVIT_MASK_PREFIX + mask_name in masks:  # the row names the image instead
            mask_name = LVIT_MASK_PREFIX + mask_name
        if mask_name not in masks:
            if not ({mask_name, LVIT_MASK_PREFIX + mask_name} & sibling_masks):  # else a row of the other split
                report.add("text_without_files", entry)
            continue
        if not description:
            report.add("empty_description", mask_name)
        rows[mask_name].append(description)

    descriptions: dict[str, str] = {}
    for mask_name, values in rows.items():
        distinct = sorted(set(values))
        if len(distinct) > 1:
            report.add("conflicting_duplicates", f"{mask_name} ({len(values)} rows)")
            descriptions[mask_name] = ""
            continue
        if len(values) > 1:
            report.warnings.append(f"{mask_name}: {len(values)} identical rows collapsed into one")
        descriptions[mask_name] = "" if mask_name in report.problems.get("empty_description", []) else distinct[0]
    return descriptions


def load_lvit_split(
    root: str | os.PathLike, split: str, on_error: str = "raise", expected_size: int | None = None
) -> list[dict]:
    """Records of one LViT split, validated as a whole first (see :func:`validate_lvit_split`).

    Args:
        root: dataset folder holding ``Train_Folder``, ``Val_Folder``, ``Test_Folder``.
        split: ``"Train"``, ``"Val"``, ``"Test"`` (or ``"training"``, ``"validation"``, ``"test"``).
        on_error: ``"raise"``: any problem raises one :class:`DatasetValidationError` listing all of them;
            ``"skip"``: the report is logged as a warning and only the valid records are returned. Problems that
            leave nothing usable (missing folder, table or columns) raise in both modes.
        expected_size: the number of valid records the split must have, e.g. a published benchmark split
            (``configs/protocol_*.json`` of TGC-Net); another number raises in both modes. None: any number.

    Returns:
        ``[{"image": abs path, "label": abs path, "text": str, "name": str}, ...]`` sorted by name, ready for
        ``CheckedLoadImaged(keys=["image", "label"])``.

    Example::

        train_records = load_lvit_split("/data/QaTa-COV19", "Train")
        val_records = load_lvit_split("/data/QaTa-COV19", "Val", on_error="skip")
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got '{on_error}'.")
    report = validate_lvit_split(root, split)
    if expected_size is not None and len(report.records) != int(expected_size):
        report.add("split_size", f"{len(report.records)} valid item(s), the benchmark split has {int(expected_size)}")
    for warning in report.warnings:
        logger.warning("%s: %s", report.source, warning)
    if report.ok:
        return report.records
    if on_error == "raise" or report.fatal:
        raise DatasetValidationError(report)
    logger.warning("Skipping invalid entries:\n%s", report.format())
    return report.records

"""Decathlon-style datalists whose items may carry a report: ``{"image": ..., "label": ..., "text": str | [str, ...]}``.

Reading goes through :func:`monai.data.load_decathlon_datalist` after the whole list has been validated (text types,
paths inside the base folder, files present); writing stores paths relative to the base folder, atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from monai.data import load_decathlon_datalist
from monai_ext.data.validation import DatasetValidationError, ValidationReport
from monai_ext.io import PathOutsideRootError, atomic_write_json, check_within_root, image_stem

__all__ = [
    "datalist_keys",
    "evaluation_records",
    "training_records",
    "DATALIST_PATH_KEYS",
    "DATALIST_TEXT_KEYS",
    "is_valid_text",
    "validate_text_datalist",
    "load_text_datalist",
    "write_text_datalist",
]

DATALIST_PATH_KEYS = ("image", "label")
# Entries that are never paths: MONAI would turn a text that happens to name an existing file into a path.
DATALIST_TEXT_KEYS = ("text", "name")


def is_valid_text(text: Any) -> bool:
    """True for a non-blank string or a non-empty list/tuple of non-blank strings."""
    if isinstance(text, str):
        return bool(text.strip())
    if isinstance(text, (list, tuple)):
        return bool(text) and all(isinstance(item, str) and item.strip() for item in text)
    return False


def _item_name(item: Mapping, index: int) -> str:
    return str(item.get("name") or item.get("image") or f"item {index}")


def _paths_of(value: Any) -> list[Any]:
    """The path(s) of one path entry: decathlon items may give a list of files (e.g. several modalities)."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def validate_text_datalist(
    json_path: str | os.PathLike,
    key: str = "training",
    base_dir: str | os.PathLike | None = None,
    path_keys: Sequence[str] = DATALIST_PATH_KEYS,
    check_files: bool = True,
) -> ValidationReport:
    """Check the items under ``key`` of a datalist JSON; the report's ``records`` are the raw valid items.

    Args:
        json_path: the datalist file.
        key: top-level key, e.g. ``"training"``, ``"validation"``, ``"test"``.
        base_dir: folder the relative paths start from (default: the JSON file's folder).
        path_keys: item entries holding file paths.
        check_files: also require every path to exist.

    Raises:
        FileNotFoundError: the JSON file does not exist.
        ValueError: the file is not JSON, or has no list under ``key`` (the message lists the keys present).
    """
    json_path = os.fspath(json_path)
    if not os.path.isfile(json_path):
        raise FileNotFoundError(f"Datalist '{json_path}' does not exist.")
    base_dir = os.path.abspath(os.fspath(base_dir) if base_dir is not None else os.path.dirname(json_path))
    try:
        with open(json_path, encoding="utf-8") as f:
            content = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"Datalist '{json_path}' is not valid JSON: {error}") from error
    if not isinstance(content, dict) or key not in content:
        present = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise ValueError(f"Datalist '{json_path}' has no key '{key}'; keys present: {present}.")
    items = content[key]
    if not isinstance(items, list):
        raise ValueError(f"Datalist '{json_path}': '{key}' must be a list of items, got {type(items).__name__}.")

    report = ValidationReport(source=f"{json_path} [{key}]")
    for index, item in enumerate(items):
        if isinstance(item, str):  # decathlon "test" lists may hold bare image paths
            item = {"image": item}
        if not isinstance(item, dict) or "image" not in item:
            report.add("invalid_item", f"item {index}: {str(item)[:80]}")
            continue
        name = _item_name(item, index)
        item_ok = True
        if "text" in item and not is_valid_text(item["text"]):
            report.add("invalid_text", f"{name}: {item['text']!r}"[:160])
            item_ok = False
        for path_key in path_keys:
            for path in _paths_of(item.get(path_key, [])):
                if not isinstance(path, str) or not path.strip():
                    report.add("invalid_path", f"{name}: {path_key}={path!r}")
                    item_ok = False
                    continue
                try:
                    resolved = check_within_root(path, base_dir)
                except PathOutsideRootError:
                    report.add("path_outside_root", f"{name}: {path_key}='{path}' (base folder {base_dir})")
                    item_ok = False
                    continue
                if check_files and not os.path.exists(resolved):
                    report.add("missing_file", os.path.join(base_dir, path))
                    item_ok = False
        if item_ok:
            report.records.append(item)
    return report


def load_text_datalist(
    json_path: str | os.PathLike,
    key: str = "training",
    base_dir: str | os.PathLike | None = None,
    path_keys: Sequence[str] = DATALIST_PATH_KEYS,
    check_files: bool = True,
) -> list[dict]:
    """Load the items under ``key`` of a decathlon-style datalist with optional per-item ``text``.

    Every item is validated first and all problems are raised together: ``text`` must be a non-blank string or a
    non-empty list of non-blank strings (one is drawn per epoch by :class:`~monai_ext.data.RandomTextd`), paths
    under ``path_keys`` must stay inside ``base_dir`` and (with ``check_files``) exist. Other entries are resolved
    as MONAI does (a string naming an existing file becomes its absolute path), except ``text`` and ``name``, which
    are kept as written. An item without ``name`` gets its image's file stem (:func:`image_stem`), so that reports,
    overlays and per-image tables name it after its file even where the image's metadata is not kept.

    Args:
        json_path: the datalist file.
        key: top-level key, e.g. ``"training"``, ``"validation"``, ``"test"``.
        base_dir: folder the relative paths start from (default: the JSON file's folder).
        path_keys: item entries holding file paths, made absolute.
        check_files: require every path to exist.

    Returns:
        the items with absolute paths under ``path_keys``.

    Raises:
        DatasetValidationError: one or more items are invalid (all are listed).

    Example::

        records = load_text_datalist("data/fundus/domain1/datalist.json", key="training")
        # [{"image": "/abs/.../img_000.png", "label": "/abs/.../mask_000.png", "text": ["...", "..."]}, ...]
    """
    report = validate_text_datalist(json_path, key, base_dir, path_keys, check_files)
    if not report.ok:
        raise DatasetValidationError(report)
    base_dir = os.path.abspath(os.fspath(base_dir) if base_dir is not None else os.path.dirname(os.fspath(json_path)))
    loaded = load_decathlon_datalist(os.fspath(json_path), is_segmentation=True, data_list_key=key, base_dir=base_dir)
    raw_items = [{"image": item} if isinstance(item, str) else item for item in report.records]
    records = [
        {key: raw[key] if key in DATALIST_TEXT_KEYS else value for key, value in item.items()}
        for raw, item in zip(raw_items, loaded)
    ]
    for record in records:
        if not record.get("name") and isinstance(record.get("image"), str):
            record["name"] = image_stem(record["image"])
    return records


def write_text_datalist(
    records: Mapping[str, Sequence[Mapping]] | Sequence[Mapping],
    json_path: str | os.PathLike,
    base_dir: str | os.PathLike | None = None,
    key: str = "training",
    path_keys: Sequence[str] = DATALIST_PATH_KEYS,
    overwrite: bool = False,
) -> str:
    """Write records as a datalist JSON with paths relative to ``base_dir``, atomically.

    Args:
        records: ``{"training": [...], "validation": [...], ...}``, or one list written under ``key``.
        json_path: output file.
        base_dir: folder the written paths are relative to (default: the JSON file's folder); load the file back
            with the same ``base_dir``.
        key: the key for ``records`` given as a list.
        path_keys: record entries holding file paths.
        overwrite: replace an existing ``json_path``.

    Returns:
        ``json_path``.

    Raises:
        DatasetValidationError: a path lies outside ``base_dir`` or a text is invalid (all offenders listed).
        FileExistsError: ``json_path`` exists and ``overwrite`` is False.

    Example::

        write_text_datalist({"training": train, "validation": val}, "data/datalist.json")
    """
    json_path = os.fspath(json_path)
    base_dir = os.path.abspath(os.fspath(base_dir) if base_dir is not None else os.path.dirname(json_path))
    groups = dict(records) if isinstance(records, Mapping) else {key: records}
    report = ValidationReport(source=f"{json_path} (writing)")
    content: dict[str, list[dict]] = {}
    for group, items in groups.items():
        content[group] = []
        for index, item in enumerate(items):
            name = _item_name(item, index)
            entry = dict(item)
            if "text" in entry and not is_valid_text(entry["text"]):
                report.add("invalid_text", f"{group}/{name}: {entry['text']!r}"[:160])
            for path_key in path_keys:
                if path_key not in entry:
                    continue
                relative = []
                for path in _paths_of(entry[path_key]):
                    absolute = os.path.abspath(os.fspath(path))
                    try:
                        check_within_root(absolute, base_dir)
                    except PathOutsideRootError:
                        report.add("path_outside_root", f"{group}/{name}: '{absolute}' (base folder {base_dir})")
                    relative.append(os.path.relpath(absolute, base_dir).replace(os.sep, "/"))
                entry[path_key] = relative if isinstance(entry[path_key], (list, tuple)) else relative[0]
            content[group].append(entry)
    if not report.ok:
        raise DatasetValidationError(report)
    atomic_write_json(json_path, content, overwrite=overwrite, sort_keys=False)
    return json_path


def datalist_keys(datalist_file: str) -> list[str]:
    """Keys of the non-empty lists in a datalist (MONAI's decathlon reader fails on an empty "test" list)."""
    with open(datalist_file, encoding="utf-8") as f:
        content = json.load(f)
    return [k for k, v in content.items() if isinstance(v, list) and v]


def training_records(
    datalist_file: str,
    train_key: str = "training",
    val_key: str | None = None,
    val_fraction: float = 0.2,
    part: str = "train",
    base_dir: str | None = None,
) -> list[dict]:
    """Training (``part="train"``) or validation (``part="val"``) records of the source domain.

    With ``val_key`` the two lists come from the datalist; otherwise the last ``max(1, round(n * val_fraction))`` items
    of ``train_key`` are held out for validation (with a single item it serves both). Target domains are never used.

    Example::

        train = training_records("data/fundus/domain_a/datalist.json", part="train")
    """
    if part not in ("train", "val"):
        raise ValueError(f"part must be 'train' or 'val', got {part!r}.")
    if val_key:
        return load_text_datalist(datalist_file, key=train_key if part == "train" else val_key, base_dir=base_dir)
    records = load_text_datalist(datalist_file, key=train_key, base_dir=base_dir)
    if not records:
        raise ValueError(f"Datalist '{datalist_file}' has no items under '{train_key}' to train on.")
    if len(records) == 1:
        return records
    n_val = min(len(records) - 1, max(1, int(round(len(records) * float(val_fraction)))))
    return records[: len(records) - n_val] if part == "train" else records[len(records) - n_val :]


def evaluation_records(datalist_file: str, key: str = "test", base_dir: str | None = None) -> list[dict]:
    """Records under ``key`` of a datalist; ``key="all"`` joins every list in the file (a whole unseen domain)."""
    if key != "all":
        return load_text_datalist(datalist_file, key=key, base_dir=base_dir)
    records = [
        r for k in datalist_keys(datalist_file) for r in load_text_datalist(datalist_file, key=k, base_dir=base_dir)
    ]
    if not records:
        raise ValueError(f"Datalist '{datalist_file}' holds no items.")
    return records

"""Per-domain datalists from benchmark folder layouts (image and mask folders side by side, DoFE/RIGA+-style
``train``/``test`` trees, cardiac volumes sliced to 2D): the form single-source domain generalisation reads its
source and target domains in; and the check of a label map against each domain's label files
(:func:`check_domain_labels`), which the preparation runs when given the map."""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from typing import Any

from monai_ext.data.datalist import datalist_keys, load_text_datalist, write_text_datalist
from monai_ext.data.label_maps import check_label_map
from monai_ext.data.volume import VolumeSlicer
from monai_ext.io import NIFTI_SUFFIXES, PICTURE_SUFFIXES, image_stem

__all__ = [
    "IMAGE_DIRS",
    "MASK_DIRS",
    "check_domain_labels",
    "prepare_fundus_domains",
    "prepare_cardiac_domains",
    "slice_volume_groups",
]


IMAGE_DIRS = ("images", "image", "imgs", "img")


MASK_DIRS = ("masks", "mask", "labels", "label", "labelcol", "gt")


# ------------------------------------------------------------------------------------------------------ data sets
def _files(folder: str) -> list[str]:
    return sorted(
        p for p in glob.glob(os.path.join(folder, "*")) if p.lower().endswith(PICTURE_SUFFIXES + NIFTI_SUFFIXES)
    )


def _pair_images_and_masks(image_dir: str, mask_dir: str) -> tuple[list[dict], list[str]]:
    """Match images and masks by file stem (masks may also be named ``mask_<stem>``, ``<stem>_mask`` or
    ``<stem>_manual``); returns the pairs and the images without a mask."""
    masks = {}
    for path in _files(mask_dir):
        stem = image_stem(path)
        for candidate in (stem, stem.removeprefix("mask_"), stem.removesuffix("_mask"), stem.removesuffix("_manual")):
            masks.setdefault(candidate, path)
    pairs, unmatched = [], []
    for path in _files(image_dir):
        mask = masks.get(image_stem(path))
        if mask is None:
            unmatched.append(path)
        else:
            pairs.append({"image": path, "label": mask})
    return pairs, unmatched


def _find_pairs(domain_dir: str) -> dict[str, list[dict]]:
    """``{"training": [...], "test": [...]}`` from every image folder under ``domain_dir`` with a mask folder beside it;
    folders below a ``test`` directory go to "test", everything else to "training"."""
    groups: dict[str, list[dict]] = {"training": [], "test": []}
    problems = []
    for root, dirs, _ in sorted(os.walk(domain_dir)):
        dirs.sort()
        image_dirs = [d for d in dirs if d.lower() in IMAGE_DIRS]
        mask_dirs = [d for d in dirs if d.lower() in MASK_DIRS]
        if not image_dirs or not mask_dirs:
            continue
        pairs, unmatched = _pair_images_and_masks(os.path.join(root, image_dirs[0]), os.path.join(root, mask_dirs[0]))
        problems += unmatched
        relative = os.path.relpath(root, domain_dir).lower().split(os.sep)
        groups["test" if any(part in ("test", "testing") for part in relative) else "training"] += pairs
    if problems:
        raise FileNotFoundError(f"{len(problems)} image(s) under {domain_dir} have no mask, e.g. {problems[:3]}.")
    if not groups["training"] and not groups["test"]:
        raise FileNotFoundError(
            f"No image/mask folder pair found under {domain_dir}: expected e.g. {domain_dir}/images + {domain_dir}/masks "
            f"(or {domain_dir}/train/ROIs/image + .../mask); image folders are named one of {IMAGE_DIRS}, mask "
            f"folders one of {MASK_DIRS}."
        )
    return groups


def _domain_dirs(data_root: str, domains: Sequence[str] | None) -> list[str]:
    if not os.path.isdir(data_root):
        raise FileNotFoundError(f"Data folder does not exist: {data_root}")
    found = sorted(d for d in os.listdir(data_root) if os.path.isdir(os.path.join(data_root, d)))
    if domains is None:
        return found
    missing = [d for d in domains if d not in found]
    if missing:
        raise FileNotFoundError(f"Domain folder(s) {missing} not found in {data_root}; present: {found}.")
    return list(domains)


def _write_datalist(groups: Mapping[str, list[dict]], json_path: str, base_dir: str) -> str:
    return write_text_datalist({k: v for k, v in groups.items() if v}, json_path, base_dir=base_dir, overwrite=True)


def check_domain_labels(
    domains: Mapping[str, Mapping[str, str]],
    label_map: Mapping[int, int] | str,
    task: str,
    map_name: str | None = None,
    max_files: int | None = 20,
    max_open_border: float = 0.2,
) -> dict[str, dict[str, Any]]:
    """Check ``label_map`` against the label files of every domain (:func:`~monai_ext.data.check_label_map` on up to
    ``max_files`` of each domain's labels, all datalist keys together).

    Args:
        domains: ``{domain: {"datalist", "base_dir"}}`` as :func:`prepare_fundus_domains` returns.
        label_map, task, map_name, max_files, max_open_border: see :func:`~monai_ext.data.check_label_map`.

    Returns:
        ``{domain: the check's summary}``.

    Raises:
        LabelMapError: the map contradicts a domain's labels (the message names the domain).
    """
    results = {}
    for domain, entry in domains.items():
        files = [
            record["label"]
            for key in datalist_keys(entry["datalist"])
            for record in load_text_datalist(entry["datalist"], key=key, base_dir=entry.get("base_dir"))
            if isinstance(record.get("label"), str)
        ]
        results[domain] = check_label_map(
            files, label_map, task, map_name, max_files, max_open_border, where=f"domain '{domain}'"
        )
    return results


def prepare_fundus_domains(
    data_root: str,
    work_dir: str,
    domains: Sequence[str] | None = None,
    label_map: Mapping[int, int] | str | None = None,
) -> dict[str, dict[str, str]]:
    """One datalist per fundus domain folder of ``data_root``.

    A domain folder with a ``datalist.json`` (the synthetic demo layout) is used as it is. Otherwise image/mask folder
    pairs are searched below it (``<domain>/images`` + ``<domain>/masks``, or DoFE/RIGA+-style
    ``<domain>/train/ROIs/image`` + ``.../mask`` and ``<domain>/test/...``) and a datalist is written to
    ``work_dir/datalists/<domain>/datalist.json`` with paths relative to the domain folder.

    Args:
        data_root: folder with one sub-folder per domain.
        work_dir: where datalists are written.
        domains: the domain folders to use (default: all).
        label_map: when given (``{stored value: class}`` or a name in :data:`~monai_ext.data.LABEL_MAPS`), it is
            checked against every domain's labels (:func:`check_domain_labels`); ``None`` checks nothing.

    Returns:
        ``{domain: {"datalist": path, "base_dir": folder the paths are relative to}}``.

    Raises:
        LabelMapError: ``label_map`` contradicts a domain's labels.
    """
    prepared = {}
    for domain in _domain_dirs(data_root, domains):
        domain_dir = os.path.abspath(os.path.join(data_root, domain))
        existing = os.path.join(domain_dir, "datalist.json")
        if os.path.isfile(existing):
            prepared[domain] = {"datalist": existing, "base_dir": domain_dir}
            continue
        json_path = os.path.join(os.path.abspath(work_dir), "datalists", domain, "datalist.json")
        _write_datalist(_find_pairs(domain_dir), json_path, base_dir=domain_dir)
        prepared[domain] = {"datalist": json_path, "base_dir": domain_dir}
    if label_map is not None:
        check_domain_labels(prepared, label_map, "fundus")
    return prepared


def prepare_cardiac_domains(
    data_root: str,
    out_dir: str,
    domains: Sequence[str] | None = None,
    overwrite: bool = True,
    label_map: Mapping[int, int] | str | None = None,
) -> dict[str, dict[str, str]]:
    """Slice every cardiac volume of each domain into 2D NIfTI files and write one datalist per domain.

    Volumes come from ``<domain>/datalist.json`` (the synthetic layout) or from ``<domain>/images`` +
    ``<domain>/labels`` (same file names, or labels named ``<stem>_manual``); slices and the datalist go to
    ``out_dir/<domain>/``. A domain whose slice datalist is already there is reused.

    Args:
        data_root: folder with one sub-folder per domain.
        out_dir: where slices and datalists are written.
        domains: the domain folders to use (default: all).
        overwrite: replace existing slice files.
        label_map: when given (``{stored value: class}`` or a name in :data:`~monai_ext.data.LABEL_MAPS`), it is
            checked against every domain's label volumes (slice by slice) before any is sliced; ``None`` checks
            nothing.

    Returns:
        ``{domain: {"datalist": path, "base_dir": folder}}``.

    Raises:
        LabelMapError: ``label_map`` contradicts a domain's labels.
    """
    prepared = {}
    for domain in _domain_dirs(data_root, domains):
        domain_dir = os.path.abspath(os.path.join(data_root, domain))
        domain_out = os.path.join(os.path.abspath(out_dir), domain)
        json_path = os.path.join(domain_out, "datalist.json")
        if not os.path.isfile(json_path):
            source = os.path.join(domain_dir, "datalist.json")
            if os.path.isfile(source):
                groups = {k: load_text_datalist(source, key=k, base_dir=domain_dir) for k in datalist_keys(source)}
            else:
                groups = _find_pairs(domain_dir)
            prepared[domain] = slice_volume_groups(groups, domain_out, overwrite, label_map, f"domain '{domain}'")
            continue
        if label_map is not None:
            check_domain_labels({domain: {"datalist": json_path, "base_dir": domain_out}}, label_map, "cardiac")
        prepared[domain] = {"datalist": json_path, "base_dir": domain_out}
    return prepared


def slice_volume_groups(
    groups: Mapping[str, Sequence[Mapping[str, Any]]],
    out_dir: str,
    overwrite: bool = True,
    label_map: Mapping[int, int] | str | None = None,
    where: str | None = None,
) -> dict[str, str]:
    """Slice the cardiac volume records of each datalist key of one domain into 2D NIfTI files and write the
    domain's slice datalist ``out_dir/datalist.json``, under the same keys.

    Each slice record keeps ``image``, ``label``, the volume's ``name``, ``slice_index`` and ``num_slices``
    (what per-volume evaluation stacks the slices back by, :class:`monai_ext.metrics.SliceVolumeReport`).

    Args:
        groups: ``{datalist key: volume records {"image", "label"}}``.
        out_dir: the domain's output folder; the slices of key ``k`` go to ``out_dir/k/``.
        overwrite: replace existing slice files.
        label_map: when given, checked against the label volumes (slice by slice) before any is sliced.
        where: what the volumes are, for the label-map check's message (e.g. ``"domain 'LGE'"``).

    Returns:
        ``{"datalist": path, "base_dir": out_dir}``.

    Raises:
        LabelMapError: ``label_map`` contradicts the labels.
    """
    out_dir = os.path.abspath(out_dir)
    if label_map is not None:
        labels = [r["label"] for records in groups.values() for r in records if isinstance(r.get("label"), str)]
        check_label_map(labels, label_map, "cardiac", where=where)
    slicer = VolumeSlicer(axis=2, overwrite=overwrite)
    sliced = {k: slicer.expand(v, os.path.join(out_dir, k)) for k, v in groups.items()}
    keep = ("image", "label", "name", "slice_index", "num_slices")
    records = {k: [{f: r[f] for f in keep if f in r} for r in v] for k, v in sliced.items()}
    json_path = os.path.join(out_dir, "datalist.json")
    _write_datalist(records, json_path, out_dir)
    return {"datalist": json_path, "base_dir": out_dir}

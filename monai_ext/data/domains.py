"""Per-domain datalists from benchmark folder layouts (image and mask folders side by side, DoFE/RIGA+-style
``train``/``test`` trees, cardiac volumes sliced to 2D): the form single-source domain generalisation reads its
source and target domains in."""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence

from monai_ext.data.datalist import datalist_keys, load_text_datalist, write_text_datalist
from monai_ext.data.volume import VolumeSlicer
from monai_ext.io import NIFTI_SUFFIXES, PICTURE_SUFFIXES, image_stem

__all__ = ["IMAGE_DIRS", "MASK_DIRS", "prepare_fundus_domains", "prepare_cardiac_domains"]


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


def prepare_fundus_domains(
    data_root: str, work_dir: str, domains: Sequence[str] | None = None
) -> dict[str, dict[str, str]]:
    """One datalist per fundus domain folder of ``data_root``.

    A domain folder with a ``datalist.json`` (the synthetic demo layout) is used as it is. Otherwise image/mask folder
    pairs are searched below it (``<domain>/images`` + ``<domain>/masks``, or DoFE/RIGA+-style
    ``<domain>/train/ROIs/image`` + ``.../mask`` and ``<domain>/test/...``) and a datalist is written to
    ``work_dir/datalists/<domain>/datalist.json`` with paths relative to the domain folder.

    Returns:
        ``{domain: {"datalist": path, "base_dir": folder the paths are relative to}}``.
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
    return prepared


def prepare_cardiac_domains(
    data_root: str, out_dir: str, domains: Sequence[str] | None = None, overwrite: bool = True
) -> dict[str, dict[str, str]]:
    """Slice every cardiac volume of each domain into 2D NIfTI files and write one datalist per domain.

    Volumes come from ``<domain>/datalist.json`` (the synthetic layout) or from ``<domain>/images`` +
    ``<domain>/labels`` (same file names, or labels named ``<stem>_manual``); slices and the datalist go to
    ``out_dir/<domain>/``. A domain whose slice datalist is already there is reused.

    Returns:
        ``{domain: {"datalist": path, "base_dir": folder}}``.
    """
    prepared = {}
    slicer = VolumeSlicer(axis=2, overwrite=overwrite)
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
            sliced = {k: slicer.expand(v, os.path.join(domain_out, k)) for k, v in groups.items()}
            keep = ("image", "label", "name", "slice_index")
            records = {k: [{f: r[f] for f in keep if f in r} for r in v] for k, v in sliced.items()}
            _write_datalist(records, json_path, domain_out)
        prepared[domain] = {"datalist": json_path, "base_dir": domain_out}
    return prepared

"""Published single-source domain-generalisation benchmarks read as their public releases lay them out, with the
splits of the methods they come from:

- **MS-CMRSeg bSSFP -> LGE as in SLAug** (Su et al., AAAI 2023; github.com/Kaiseem/SLAug,
  ``dataloaders/CardiacDataset.py``; LG_SDG builds on the same code): the preprocessed release
  ``data/cardiac/processed/{bSSFP,LGE}/image_<id>.nii.gz`` + ``label_<id>.nii.gz`` (labels 0 background,
  1 myocardium, 2 LV, 3 RV, SLAug's ``LABEL_NAME``), split by patient: bSSFP 1-35 train, 36-45 validation; LGE 6-45
  test (:func:`prepare_slaug_mscmrseg`).
- **RIGA+ as in CCSDG** (Hu et al., MICCAI 2023; github.com/ShishuaiHu/CCSDG): the Zenodo release (record 6325549)
  with one CSV per site and split (``<site>_train.csv``, ``<site>_test.csv``, header ``image,mask``; rows name
  ``RIGA/<site>/.../<name>.tif`` and ``RIGA-mask/<site>/.../<name>.tif``, whose rater-``r`` mask is
  ``<name>-<r>.tif``, CCSDG reading rater 1), masks 0 background, 255 disc rim, 128 cup
  (:func:`prepare_ccsdg_riga`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence

from monai_ext.data.datalist import write_text_datalist
from monai_ext.data.domains import check_domain_labels, slice_volume_groups
from monai_ext.io import check_within_root

__all__ = ["RIGA_SITES", "SLAUG_MSCMRSEG_SPLITS", "prepare_ccsdg_riga", "prepare_slaug_mscmrseg"]


# SLAug's patient-level split of its MS-CMRSeg release (CardiacDataset.__get_scanids) for bSSFP -> LGE:
# {domain folder: {datalist key: patient ids}}.
SLAUG_MSCMRSEG_SPLITS: dict[str, dict[str, tuple[int, ...]]] = {
    "bSSFP": {"training": tuple(range(1, 36)), "validation": tuple(range(36, 46))},
    "LGE": {"test": tuple(range(6, 46))},
}

# The five RIGA+ sites (domains), each with <site>_train.csv and <site>_test.csv in the release.
RIGA_SITES = ("BinRushed", "Magrabia", "MESSIDOR_Base1", "MESSIDOR_Base2", "MESSIDOR_Base3")


def _listed_problems(problems: Sequence[str], limit: int = 5) -> str:
    shown = "; ".join(problems[:limit])
    return shown + (f"; ... ({len(problems) - limit} more)" if len(problems) > limit else "")


def prepare_slaug_mscmrseg(
    data_root: str,
    out_dir: str,
    splits: Mapping[str, Mapping[str, Sequence[int]]] | None = None,
    label_map: Mapping[int, int] | str | None = None,
    overwrite: bool = True,
) -> dict[str, dict[str, str]]:
    """Slice SLAug's preprocessed MS-CMRSeg release into 2D NIfTI slices with SLAug's patient split.

    Args:
        data_root: SLAug's ``data/cardiac/processed`` folder, holding ``bSSFP/`` and ``LGE/`` with
            ``image_<id>.nii.gz`` and ``label_<id>.nii.gz``.
        out_dir: slices and one datalist per domain go to ``out_dir/<domain>/`` (keys as in ``splits``).
        splits: ``{domain: {datalist key: patient ids}}``; default :data:`SLAUG_MSCMRSEG_SPLITS` (bSSFP 1-35
            ``training``, 36-45 ``validation``; LGE 6-45 ``test``). Files of other patients are not used.
        label_map: checked against the label volumes before slicing when given (``"slaug"``: 1 myocardium, 2 LV).
        overwrite: replace existing slice files.

    Returns:
        ``{domain: {"datalist", "base_dir"}}``; slice records name their volume ``<domain>_<id>`` (SLAug's scan id).

    Raises:
        FileNotFoundError: a domain folder or a volume of the split is missing (all missing files counted, the first
            ones named).
        LabelMapError: ``label_map`` contradicts a domain's labels.
    """
    data_root = os.path.abspath(data_root)
    splits = SLAUG_MSCMRSEG_SPLITS if splits is None else splits
    groups: dict[str, dict[str, list[dict]]] = {}
    missing: list[str] = []
    for domain, keys in splits.items():
        folder = os.path.join(data_root, domain)
        if not os.path.isdir(folder):
            present = sorted(d for d in os.listdir(data_root) if os.path.isdir(os.path.join(data_root, d)))
            raise FileNotFoundError(
                f"SLAug's MS-CMRSeg release: no folder '{domain}' in {data_root} (present: {present}). Point data_root "
                "at SLAug's data/cardiac/processed, which holds bSSFP/ and LGE/ with image_<id>.nii.gz and "
                "label_<id>.nii.gz."
            )
        groups[domain] = {}
        for key, ids in keys.items():
            records = []
            for patient in ids:
                record = {
                    "image": os.path.join(folder, f"image_{patient}.nii.gz"),
                    "label": os.path.join(folder, f"label_{patient}.nii.gz"),
                    "name": f"{domain}_{patient}",
                }
                missing += [record[k] for k in ("image", "label") if not os.path.isfile(record[k])]
                records.append(record)
            groups[domain][key] = records
    if missing:
        raise FileNotFoundError(
            f"SLAug's MS-CMRSeg release in {data_root} lacks {len(missing)} file(s) of the protocol's patient split "
            f"(bSSFP 1-45, LGE 6-45): {_listed_problems(missing)}."
        )
    return {
        domain: slice_volume_groups(
            groups[domain], os.path.join(os.path.abspath(out_dir), domain), overwrite, label_map, f"domain '{domain}'"
        )
        for domain in splits
    }


def _read_riga_list(csv_path: str, data_root: str, rater: int) -> tuple[list[dict], list[str]]:
    """The (image, rater mask) records of one RIGA+ list and its problems (missing files, malformed rows)."""
    records, problems = [], []
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if any(cell.strip() for cell in row)]
    if not rows:
        return [], [f"'{csv_path}' is empty"]
    for number, row in enumerate(rows[1:], start=2):  # the first row is the header (image,mask)
        image, mask = row[0].strip(), row[-1].strip()
        if len(row) < 2 or not mask.lower().endswith(".tif"):
            problems.append(f"'{csv_path}' row {number} {row}: expected 'image,mask' with a .tif mask")
            continue
        label = mask[: -len(".tif")] + f"-{rater}.tif"
        try:
            paths = [check_within_root(p, data_root) for p in (image, label)]
        except ValueError as error:
            problems.append(f"'{csv_path}' row {number}: {error}")
            continue
        problems += [f"'{csv_path}' row {number}: '{p}' does not exist" for p in paths if not os.path.isfile(p)]
        records.append({"image": paths[0], "label": paths[1]})
    if not records and not problems:
        problems.append(f"'{csv_path}' lists no images")
    return records, problems


def prepare_ccsdg_riga(
    data_root: str,
    work_dir: str,
    sites: Sequence[str] | None = None,
    rater: int = 1,
    label_map: Mapping[int, int] | str | None = None,
) -> dict[str, dict[str, str]]:
    """One datalist per RIGA+ site from the release's own lists, as CCSDG reads them.

    ``<site>_train.csv`` becomes the datalist's ``training`` list and ``<site>_test.csv`` its ``test`` list; each
    row's mask ``.../<name>.tif`` is read as rater ``rater``'s ``.../<name>-<rater>.tif`` (CCSDG:
    ``convert_labeled_list(..., r=1)``).

    Args:
        data_root: the unpacked RIGA+ release (the CSVs, ``RIGA/``, ``RIGA-mask/``).
        work_dir: datalists go to ``work_dir/datalists/<site>/datalist.json``, paths relative to ``data_root``.
        sites: the sites to prepare (default :data:`RIGA_SITES`).
        rater: which of the six raters' masks to read (CCSDG: 1).
        label_map: checked against every site's masks when given (``"ccsdg"``: 255 disc rim, 128 cup).

    Returns:
        ``{site: {"datalist", "base_dir": data_root}}``.

    Raises:
        FileNotFoundError: a list is missing, or names files that are not there (all problems counted, the first
            ones named).
        LabelMapError: ``label_map`` contradicts a site's masks.
    """
    data_root = os.path.abspath(data_root)
    sites = list(RIGA_SITES if sites is None else sites)
    if not 1 <= int(rater) <= 6:
        raise ValueError(f"RIGA+ has raters 1 to 6, got rater={rater}.")
    groups, problems = {}, []
    for site in sites:
        groups[site] = {}
        for key, split in (("training", "train"), ("test", "test")):
            csv_path = os.path.join(data_root, f"{site}_{split}.csv")
            if not os.path.isfile(csv_path):
                problems.append(f"list '{csv_path}' not found")
                continue
            groups[site][key], found = _read_riga_list(csv_path, data_root, int(rater))
            problems += found
    if problems:
        raise FileNotFoundError(
            f"CCSDG's RIGA+ release in {data_root} (Zenodo record 6325549, unpacked: <site>_train.csv, "
            f"<site>_test.csv, RIGA/, RIGA-mask/ for sites {sites}) has {len(problems)} problem(s): "
            f"{_listed_problems(problems)}."
        )
    prepared = {}
    for site in sites:
        json_path = os.path.join(os.path.abspath(work_dir), "datalists", site, "datalist.json")
        write_text_datalist(groups[site], json_path, base_dir=data_root, overwrite=True)
        prepared[site] = {"datalist": json_path, "base_dir": data_root}
    if label_map is not None:
        check_domain_labels(prepared, label_map, "fundus")
    return prepared

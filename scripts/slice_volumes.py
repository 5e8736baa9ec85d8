"""Cut cardiac MRI volumes into the 2D slices the VLSA-Net bundle trains and infers on, with one datalist per domain.

Each domain folder of ``--data_root`` holds volumes as ``<domain>/images/<name>.nii.gz`` with labels in
``<domain>/labels/<name>[_manual].nii.gz`` (MS-CMRSeg 2019), or a ``datalist.json`` (``scripts/make_demo_data.py
cardiac``). Every volume is cut along its third axis into 2D NIfTI slices that keep their world position
(``monai_ext.data.VolumeSlicer``), written to ``<out_dir>/<domain>/`` with ``<out_dir>/<domain>/datalist.json``.
A domain whose slice datalist exists already is kept as it is.

Usage::

    python scripts/make_demo_data.py cardiac --out_dir demo_data/cardiac_volumes
    python scripts/slice_volumes.py --data_root demo_data/cardiac_volumes --out_dir demo_data/cardiac
    # then, from bundles/vlsanet: train on one sequence, e.g. bSSFP (its datalist.json is found in the folder)
    python -m monai.bundle run --config_file "['configs/train.json','configs/cardiac.json']" \
        --dataset_dir /abs/path/demo_data/cardiac/bssfp
"""

from __future__ import annotations

import json
import os
import sys

import fire

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from monai_ext.data.domains import prepare_cardiac_domains  # noqa: E402
from monai_ext.flags import checked_flags  # noqa: E402


def main(data_root: str, out_dir: str, domains: str | tuple[str, ...] | None = None) -> dict[str, dict[str, int]]:
    """Slice every domain of ``data_root`` (or only ``domains``, comma-separated) into ``out_dir``.

    Returns:
        ``{domain: {datalist key: number of slices}}``, also printed with each datalist's path.
    """
    if isinstance(domains, str):
        domains = tuple(d.strip() for d in domains.split(",") if d.strip())
    prepared = prepare_cardiac_domains(data_root, out_dir, domains, overwrite=False)
    counts = {}
    for domain, paths in prepared.items():
        with open(paths["datalist"], encoding="utf-8") as f:
            counts[domain] = {key: len(items) for key, items in json.load(f).items()}
        print(f"{domain}: {counts[domain]} slices -> {paths['datalist']}")
    return counts


if __name__ == "__main__":
    try:
        fire.Fire(checked_flags(main), serialize=lambda counts: None)  # main prints its own summary
    except (FileNotFoundError, FileExistsError, ValueError) as error:  # a message, not a traceback
        sys.exit(f"slice_volumes: {error}")

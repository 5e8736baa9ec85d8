"""Convert a dataset in the LViT layout (QaTa-COV19, MosMedData+) into one decathlon-style datalist JSON.

The splits Train/Val/Test become the keys training/validation/test; each item is
``{"image", "label", "text", "name"}`` with paths relative to ``--base_dir`` (default: the dataset root), so the file
loads with ``monai_ext.data.load_text_datalist(output, key, base_dir=root)``. Every split is validated first (tables,
files, and every image and mask read through the training pipeline's checks unless ``--check_images False``), all
splits' problems reported together; with ``--on_error skip`` the invalid entries are left out and reported instead of
stopping the conversion.

Usage::

    python scripts/lvit_to_datalist.py --root /data/QaTa-COV19 --output /data/QaTa-COV19/datalist.json
    python scripts/lvit_to_datalist.py --root /data/QaTa-COV19 --output datalist.json --splits Train,Test \
        --on_error skip --overwrite
"""

from __future__ import annotations

import os
import sys

import fire

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from monai_ext.data.datalist import write_text_datalist  # noqa: E402
from monai_ext.data.lvit import lvit_split_name, validate_lvit_split  # noqa: E402
from monai_ext.data.validation import DatasetValidationError, ValidationReport, check_loadable  # noqa: E402
from monai_ext.flags import checked_flags  # noqa: E402

DATALIST_KEYS = {"Train": "training", "Val": "validation", "Test": "test"}


def main(
    root: str,
    output: str,
    splits: str | tuple[str, ...] = "Train,Val,Test",
    on_error: str = "raise",
    overwrite: bool = False,
    base_dir: str | None = None,
    check_images: bool = True,
) -> dict:
    """Validate the splits of ``root``, write the datalist to ``output`` and return ``{key: number of items}``.

    Every split is checked before anything is written, and the problems of all splits are reported together. With
    ``check_images`` every image and mask is also read through the TGC-Net training pipeline's loading checks (2D,
    grey or colour picture of a grey image, mask of the image's size, single-channel and binary), with a progress bar.

    Raises:
        DatasetValidationError: a split has problems (all listed) and ``on_error`` is ``"raise"``, or a split has no
            usable table/folders.
        FileExistsError: ``output`` exists and ``overwrite`` is False.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"--on_error must be 'raise' or 'skip', got '{on_error}'.")
    if os.path.exists(output) and not overwrite:
        raise FileExistsError(f"Output '{output}' already exists; pass --overwrite to replace it.")
    split_names = [s.strip() for s in splits.split(",")] if isinstance(splits, str) else [str(s) for s in splits]
    load = _training_loader() if check_images else None
    datalist, skipped, refused = {}, {}, []
    for split in (lvit_split_name(s) for s in split_names):
        report = validate_lvit_split(root, split)
        if load is not None and not report.fatal:
            check_loadable(report, load, description=f"{split}: reading images and masks")
        if not report.ok and (on_error == "raise" or report.fatal):
            refused.append((split, report))
            continue
        if not report.ok or report.warnings:
            print(report.format(), file=sys.stderr)
        datalist[DATALIST_KEYS[split]] = report.records
        skipped[DATALIST_KEYS[split]] = report.num_problems
    if len(refused) == 1:
        raise DatasetValidationError(refused[0][1])
    if refused:
        combined = ValidationReport(
            source=f"{os.path.abspath(root)} [{', '.join(split for split, _ in refused)}]",
            records=[record for _, report in refused for record in report.records],
        )
        for split, report in refused:
            for category, items in report.problems.items():
                for item in items:
                    combined.add(category, f"{split}: {item}")
        raise DatasetValidationError(combined)
    write_text_datalist(datalist, output, base_dir=base_dir if base_dir is not None else root, overwrite=overwrite)
    counts = {key: len(items) for key, items in datalist.items()}
    for key, count in counts.items():
        note = f" ({skipped[key]} problem(s) skipped)" if skipped[key] else ""
        print(f"{key}: {count} item(s){note}")
    print(f"Wrote {output} (paths relative to {os.path.abspath(base_dir if base_dir is not None else root)})")
    return counts


# The transforms of TGC-Net's training load_transforms that check files (the rest rescale, resize and fill in text).
CHECKING_TRANSFORMS = ("CheckedLoadImaged", "BinarizeMaskd")


def _training_loader():
    """The loading checks of TGC-Net's training pipeline, built from ``bundles/tgcnet/configs/train.json`` itself."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    parser = ConfigParser()
    parser.read_config(os.path.join(REPO_ROOT, "bundles", "tgcnet", "configs", "train.json"))
    ids = [
        f"load_transforms#{index}"
        for index, transform in enumerate(parser["load_transforms"])
        if transform["_target_"].rsplit(".", 1)[-1] in CHECKING_TRANSFORMS
    ]
    return Compose([parser.get_parsed_content(config_id) for config_id in ids])


def cli() -> None:
    """Run :func:`main` from the command line; input errors print one clear message instead of a traceback."""
    try:
        fire.Fire(checked_flags(main), serialize=lambda counts: None)  # main prints its own summary
    except (DatasetValidationError, ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"lvit_to_datalist: error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    cli()

"""Write the synthetic demo datasets (nothing is downloaded; deterministic for a given seed).

Usage::

    python scripts/make_demo_data.py chest_xray --out_dir data/demo/chest_xray --n_train 160 --n_val 32 --n_test 48
    python scripts/make_demo_data.py fundus --out_dir data/demo/fundus --n_per_domain 50 --image_size 256
    python scripts/make_demo_data.py cardiac --out_dir data/demo/cardiac --n_per_domain 20 --slices 4
    python scripts/make_demo_data.py all --out_dir data/demo   # the three above, default sizes, in sub-folders
    # stand-ins of published releases, for dry runs of scripts/evaluate_dg.py --protocol
    python scripts/make_demo_data.py mscmrseg_slaug_release --out_dir data/demo/slaug_processed
    python scripts/make_demo_data.py riga_ccsdg_release --out_dir data/demo/RIGAPlus
    # ... and of LViT's QaTa-COV19 / MosMedData+ releases, for dry runs of TGC-Net's configs/protocol_*.json
    python scripts/make_demo_data.py lvit_release --release qata_cov19 --out_dir data/demo/QaTa-COV19

Every subcommand takes ``--seed`` and ``--overwrite`` (replace an earlier synthetic dataset in ``out_dir``) and prints
what was written, where, and how long it took.
"""

from __future__ import annotations

import os
import sys
import time

import fire

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from monai_ext.demo import (  # noqa: E402
    make_cardiac_dataset,
    make_ccsdg_riga_release,
    make_chest_xray_dataset,
    make_fundus_dataset,
    make_lvit_release,
    make_slaug_mscmrseg_release,
)
from monai_ext.flags import checked_flags  # noqa: E402


def _report(title: str, summary: dict, seconds: float) -> None:
    counts = summary["counts"]
    total = sum(v if isinstance(v, int) else sum(v.values()) for v in counts.values())
    print(f"{title}: {total} samples written to {summary['out_dir']} in {seconds:.1f} s")
    for group, count in counts.items():
        print(f"  {group}: {count}")


def chest_xray(
    out_dir: str = "demo_data/chest_xray",
    n_train: int = 200,
    n_val: int = 40,
    n_test: int = 60,
    image_size: int = 224,
    seed: int = 0,
    name_all_lesions: bool = False,
    overwrite: bool = False,
) -> None:
    """Chest X-rays with reports naming a subset of the lesions, LViT layout plus datalist.json."""
    start = time.perf_counter()
    summary = make_chest_xray_dataset(
        out_dir,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        image_size=image_size,
        seed=seed,
        name_all_lesions=name_all_lesions,
        overwrite=overwrite,
    )
    _report("chest X-ray", summary, time.perf_counter() - start)
    print(f"  lesions: {summary['lesions_present']} drawn, {summary['lesions_named']} named in reports and masks")
    print(f"  datalist: {summary['datalist']}")


def fundus(
    out_dir: str = "demo_data/fundus",
    n_per_domain: int = 50,
    image_size: int = 256,
    seed: int = 0,
    domains: list[str] | None = None,
    test_fraction: float = 0.2,
    overwrite: bool = False,
) -> None:
    """Fundus photographs with disc/cup labels from four imitation cameras, one folder per domain."""
    start = time.perf_counter()
    summary = make_fundus_dataset(
        out_dir,
        n_per_domain=n_per_domain,
        image_size=image_size,
        seed=seed,
        domains=domains,
        test_fraction=test_fraction,
        overwrite=overwrite,
    )
    _report("fundus", summary, time.perf_counter() - start)


def cardiac(
    out_dir: str = "demo_data/cardiac",
    n_per_domain: int = 20,
    image_size: int = 128,
    slices: int = 4,
    seed: int = 0,
    domains: list[str] | None = None,
    test_fraction: float = 0.2,
    overwrite: bool = False,
) -> None:
    """Short-axis cardiac MRI NIfTI volumes (LV, myocardium, RV) in bSSFP-, LGE- and T2-like sequences (the VLSA-Net
    bundle is 2D: cut them into slices with ``scripts/slice_volumes.py``)."""
    start = time.perf_counter()
    summary = make_cardiac_dataset(
        out_dir,
        n_per_domain=n_per_domain,
        image_size=image_size,
        slices=slices,
        seed=seed,
        domains=domains,
        test_fraction=test_fraction,
        overwrite=overwrite,
    )
    _report("cardiac MRI", summary, time.perf_counter() - start)


def mscmrseg_slaug_release(
    out_dir: str = "demo_data/slaug_processed",
    patients: int = 45,
    image_size: int = 64,
    slices: int = 3,
    seed: int = 0,
    overwrite: bool = False,
) -> None:
    """A synthetic stand-in of SLAug's preprocessed MS-CMRSeg release (bSSFP/, LGE/ with image_<id>.nii.gz and
    label_<id>.nii.gz, labels 1 myocardium, 2 LV, 3 RV) for ``evaluate_dg.py --protocol mscmrseg_slaug``."""
    start = time.perf_counter()
    summary = make_slaug_mscmrseg_release(
        out_dir, patients=patients, image_size=image_size, slices=slices, seed=seed, overwrite=overwrite
    )
    _report("SLAug MS-CMRSeg stand-in (volumes per sequence)", summary, time.perf_counter() - start)


def riga_ccsdg_release(
    out_dir: str = "demo_data/RIGAPlus",
    n_train: int = 4,
    n_test: int = 2,
    image_size: int = 800,
    seed: int = 0,
    overwrite: bool = False,
) -> None:
    """A synthetic stand-in of CCSDG's RIGA+ release (<site>_train/_test.csv, RIGA/, RIGA-mask/ TIFFs; masks 0, 255
    disc rim, 128 cup) for ``evaluate_dg.py --protocol riga_ccsdg``."""
    start = time.perf_counter()
    summary = make_ccsdg_riga_release(
        out_dir, n_train=n_train, n_test=n_test, image_size=image_size, seed=seed, overwrite=overwrite
    )
    _report("CCSDG RIGA+ stand-in", summary, time.perf_counter() - start)


def lvit_release(
    out_dir: str = "demo_data/QaTa-COV19",
    release: str = "qata_cov19",
    n_train: int = 8,
    n_val: int = 2,
    n_test: int = 2,
    image_size: int = 224,
    seed: int = 0,
    overwrite: bool = False,
) -> None:
    """A synthetic stand-in of LViT's QaTa-COV19 (``--release qata_cov19``: covid_<k>.png, mask_covid_<k>.png,
    Train_Folder/Train_Val_text.xlsx) or MosMedData+ (``mosmeddata``: masks named like their images, a table per
    split) for dry runs of TGC-Net's ``configs/protocol_*.json``."""
    start = time.perf_counter()
    summary = make_lvit_release(
        out_dir, release, n_train=n_train, n_val=n_val, n_test=n_test, image_size=image_size, seed=seed,
        overwrite=overwrite,
    )  # fmt: skip
    _report(f"LViT {summary['release']} stand-in", summary, time.perf_counter() - start)


def all_datasets(out_dir: str = "demo_data", seed: int = 0, overwrite: bool = False) -> None:
    """All three datasets with default sizes, in ``out_dir/{chest_xray,fundus,cardiac}``."""
    chest_xray(os.path.join(out_dir, "chest_xray"), seed=seed, overwrite=overwrite)
    fundus(os.path.join(out_dir, "fundus"), seed=seed, overwrite=overwrite)
    cardiac(os.path.join(out_dir, "cardiac"), seed=seed, overwrite=overwrite)


if __name__ == "__main__":
    try:
        commands = {
            "chest_xray": chest_xray,
            "fundus": fundus,
            "cardiac": cardiac,
            "mscmrseg_slaug_release": mscmrseg_slaug_release,
            "riga_ccsdg_release": riga_ccsdg_release,
            "lvit_release": lvit_release,
            "all": all_datasets,
        }
        fire.Fire({name: checked_flags(command) for name, command in commands.items()})
    except (FileExistsError, ValueError) as error:  # bad arguments or an existing output: a message, not a traceback
        sys.exit(f"make_demo_data: {error}")

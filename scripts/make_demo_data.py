"""Write the synthetic demo datasets (nothing is downloaded; deterministic for a given seed).

Usage::

    python scripts/make_demo_data.py chest_xray --out_dir data/demo/chest_xray --n_train 160 --n_val 32 --n_test 48
    python scripts/make_demo_data.py fundus --out_dir data/demo/fundus --n_per_domain 50 --image_size 256
    python scripts/make_demo_data.py cardiac --out_dir data/demo/cardiac --n_per_domain 20 --slices 4
    python scripts/make_demo_data.py all --out_dir data/demo   # the three above, default sizes, in sub-folders

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

from monai_ext.demo import make_cardiac_dataset, make_chest_xray_dataset, make_fundus_dataset  # noqa: E402
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


def all_datasets(out_dir: str = "demo_data", seed: int = 0, overwrite: bool = False) -> None:
    """All three datasets with default sizes, in ``out_dir/{chest_xray,fundus,cardiac}``."""
    chest_xray(os.path.join(out_dir, "chest_xray"), seed=seed, overwrite=overwrite)
    fundus(os.path.join(out_dir, "fundus"), seed=seed, overwrite=overwrite)
    cardiac(os.path.join(out_dir, "cardiac"), seed=seed, overwrite=overwrite)


if __name__ == "__main__":
    try:
        commands = {"chest_xray": chest_xray, "fundus": fundus, "cardiac": cardiac, "all": all_datasets}
        fire.Fire({name: checked_flags(command) for name, command in commands.items()})
    except (FileExistsError, ValueError) as error:  # bad arguments or an existing output: a message, not a traceback
        sys.exit(f"make_demo_data: {error}")

"""Package a bundle for the MONAI Model Zoo: a zip that runs with only MONAI and the metadata's required packages.

Usage (from the repository root)::

    python scripts/package_bundle.py --bundle_dir bundles/tgcnet --output dist/tgcnet_v0.3.0.zip
    python scripts/package_bundle.py --bundle_dir bundles/tgcnet --include_demo False   # no demo configs/generators
    python scripts/package_bundle.py --bundle_dir bundles/tgcnet --weights runs/tgcnet/model.pt \
        --weights_url https://github.com/<org>/<repo>/releases/download/v0.3.0/tgcnet_model.pt   # with weights
    python scripts/package_bundle.py --verify dist/tgcnet_v0.3.0.zip   # check hashes only
    python scripts/package_bundle.py --bundle_dir bundles/tgcnet --check_pins   # pins vs PyPI for Python 3.10

The archive holds ``<bundle>/configs``, ``docs``, ``LICENSE``, ``large_files.yml``, ``scripts/monai_ext`` (the modules
of this repository's package that the archive's configs import, with what those import; generated here, never
committed) with a generated ``scripts/__init__.py``, configs whose imports start with ``"$import scripts"``, and
``sha256sums.txt`` with the SHA-256 of every file. ``--include_demo False`` leaves out the demo configs
(``configs/demo*``) and so the demo data generators.

Weights: ``--weights PATH --weights_url URL`` ship the trained checkpoint as ``models/model.pt`` (refused unless it
loads safely and fits the network of ``configs/inference.json``; ``--weights_configs`` adds config overlays for another
variant, ``--check_network False`` skips building the network) and write ``large_files.yml`` with that URL and the
file's SHA-256. Without them no weights go in and ``large_files.yml`` lists none (``large_files: []``).

``--check_pins`` (network) checks ``monai_version``, ``pytorch_version``, ``numpy_version`` and every pin of
``required_packages_version`` against PyPI: each needs a wheel for CPython 3.10
(``--python_version``) on manylinux x86_64, the Python the Model Zoo's CI installs them with. Exits with 1 if one has
none. Unpack the archive and run from the bundle folder::

    cd tgcnet && python -m monai.bundle run --config_file configs/inference.json --dataset_dir /data/images
"""

from __future__ import annotations

import json
import os
import sys

import fire

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from monai_ext.bundle import pins as bundle_pins  # noqa: E402
from monai_ext.bundle.packaging import package_bundle, verify_bundle_archive  # noqa: E402
from monai_ext.flags import checked_flags  # noqa: E402


def _as_list(value: str | list[str] | tuple[str, ...]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def main(
    bundle_dir: str = "bundles/tgcnet",
    output: str | None = None,
    packages: str | list[str] = ("monai_ext",),
    name: str | None = None,
    exclude: str | list[str] = (),
    include_demo: bool = True,
    check_requirements: bool = True,
    overwrite: bool = False,
    verify: str | None = None,
    weights: str | None = None,
    weights_url: str | None = None,
    weights_configs: str | list[str] = (),
    check_network: bool = True,
    check_pins: bool = False,
    python_version: str = bundle_pins.ZOO_PYTHON,
) -> None:
    """Write the archive (or, with ``--verify ARCHIVE``, only check an archive's files against its manifest; with
    ``--check_pins``, only check the metadata's pins against PyPI)."""
    if verify:
        problems = verify_bundle_archive(verify)
        print("\n".join(problems) if problems else f"{verify}: every file matches sha256sums.txt")
        if problems:
            raise SystemExit(1)
        return
    if check_pins:
        if not isinstance(python_version, str):  # fire reads --python_version 3.10 as the number 3.1
            raise SystemExit(f"--python_version {python_version!r}: give it as text, e.g. --python_version '\"3.11\"'.")
        with open(os.path.join(bundle_dir, "configs", "metadata.json"), encoding="utf-8") as f:
            pins = bundle_pins.metadata_pins(json.load(f))
        problems = _check_pins(pins, python_version)
        print("\n".join(problems) if problems else f"{len(pins)} pins have wheels for CPython {python_version}")
        if problems:
            raise SystemExit(1)
        return
    try:
        result = package_bundle(
            bundle_dir,
            output,
            packages=_as_list(packages),
            name=name,
            exclude=_as_list(exclude),
            include_demo=include_demo,
            check_requirements=check_requirements,
            overwrite=overwrite,
            weights=weights,
            weights_url=weights_url,
            weights_configs=_as_list(weights_configs),
            check_network=check_network,
        )
    except (ValueError, FileNotFoundError, FileExistsError) as error:  # what is wrong, in one line, no traceback
        raise SystemExit(f"package_bundle: {error}") from None
    print(f"{result['archive']}: {len(result['files'])} files")
    if result["skipped"]:
        print("left out: " + ", ".join(result["skipped"]))
    for entry in result["large_files"]:
        print(
            f"large_files.yml: {entry['path']} from {entry['url']} ({entry.get('hash_type')} {entry.get('hash_val')})"
        )
    if result["requirements"]["optional"]:
        print(
            "imported only by optional features (not in required_packages_version): "
            + ", ".join(result["requirements"]["optional"])
        )


def _check_pins(pins: dict[str, str], python_version: str) -> list[str]:
    try:
        return bundle_pins.check_pins(pins, python_version=python_version)
    except OSError as error:  # no network, proxy, TLS: say so instead of a traceback
        raise SystemExit(f"package_bundle --check_pins: cannot reach PyPI ({error})") from None


if __name__ == "__main__":
    fire.Fire(checked_flags(main))

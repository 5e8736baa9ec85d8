"""Package a bundle for the MONAI Model Zoo: a zip that runs with only MONAI and the metadata's required packages.

Usage (from the repository root)::

    python scripts/package_bundle.py --bundle_dir bundles/tgcnet --output dist/tgcnet_v0.1.0.zip
    python scripts/package_bundle.py --bundle_dir bundles/tgcnet --include_demo False   # no demo configs/generators
    python scripts/package_bundle.py --bundle_dir bundles/tgcnet --verify dist/tgcnet_v0.1.0.zip   # check hashes only

The archive holds ``<bundle>/configs``, ``docs``, ``LICENSE``, ``large_files.yml`` (weights are not included: users
download them as that file says), ``scripts/monai_ext`` (the modules of this repository's package that the archive's
configs import, with what those import; generated here, never committed) with a generated ``scripts/__init__.py``,
configs whose imports start with ``"$import scripts"``, and ``sha256sums.txt`` with the SHA-256 of every file.
``--include_demo False`` leaves out the demo configs (``configs/demo*``) and so the demo data generators. Unpack it
and run from the bundle folder::

    cd tgcnet && python -m monai.bundle run --config_file configs/inference.json --dataset_dir /data/images
"""

from __future__ import annotations

import os
import sys

import fire

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from monai_ext.bundle.packaging import package_bundle, verify_bundle_archive  # noqa: E402
from monai_ext.flags import checked_flags  # noqa: E402


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
) -> None:
    """Write the archive (or, with ``--verify ARCHIVE``, only check an archive's files against its manifest)."""
    if verify:
        problems = verify_bundle_archive(verify)
        print("\n".join(problems) if problems else f"{verify}: every file matches sha256sums.txt")
        if problems:
            raise SystemExit(1)
        return
    packages = [packages] if isinstance(packages, str) else list(packages)
    exclude = [exclude] if isinstance(exclude, str) else list(exclude)
    result = package_bundle(
        bundle_dir,
        output,
        packages=packages,
        name=name,
        exclude=exclude,
        include_demo=include_demo,
        check_requirements=check_requirements,
        overwrite=overwrite,
    )
    print(f"{result['archive']}: {len(result['files'])} files")
    if result["skipped"]:
        print("left out: " + ", ".join(result["skipped"]))
    if result["requirements"]["optional"]:
        print(
            "imported only by optional features (not in required_packages_version): "
            + ", ".join(result["requirements"]["optional"])
        )


if __name__ == "__main__":
    fire.Fire(checked_flags(main))

"""Segment an image as a free-text report describes, with any bundle of this repository.

Usage (from the repository root)::

    # one image (PNG, NIfTI, a DICOM file or a DICOM series folder) and your own report
    python scripts/predict.py --bundle_dir bundles/tgcnet --checkpoint bundles/tgcnet/models/model.pt \
        --image case1.png --text "Two infected areas, upper left lung and lower right lung." --output_dir pred
    # a CT volume, slice by slice (the bundle's CT preprocessing: HU window, in-plane resize)
    python scripts/predict.py --bundle_dir bundles/tgcnet --configs "['configs/inference_ct.json']" \
        --image /data/ct/series_0001 --text "Ground-glass opacity in both lower lobes." --output_dir pred
    # many images: a CSV with columns image,text (paths relative to the CSV); a progress bar, failures listed at the end
    python scripts/predict.py --bundle_dir bundles/tgcnet --csv cases.csv --output_dir pred

Outputs: ``<name>_mask.png`` for pictures, ``<name>_mask.nii.gz`` for NIfTI (input affine) and DICOM (series
geometry, RAS), ``<name>_overlay.png`` with the report printed on it, and in CSV mode ``predictions.csv``. Existing
files are kept unless ``--overwrite``. The exit code is 1 when any image failed.
"""

from __future__ import annotations

import os
import sys

import fire

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from monai_ext.apps.predict import BundlePredictor, predict_csv  # noqa: E402
from monai_ext.flags import checked_flags  # noqa: E402


def main(
    bundle_dir: str = "bundles/tgcnet",
    output_dir: str = "predictions",
    image: str | None = None,
    text: str | None = None,
    csv: str | None = None,
    image_root: str | None = None,
    checkpoint: str | None = None,
    configs: str | list[str] | None = None,
    overrides: dict | None = None,
    device: str = "cpu",
    threshold: float = 0.5,
    overwrite: bool = False,
    progress: bool = True,
) -> None:
    """Predict one ``--image`` with ``--text``, or every row of ``--csv``; exits with 1 when any image failed."""
    if (image is None) == (csv is None):
        raise SystemExit("Give either --image (with --text) or --csv.")
    try:
        predictor = BundlePredictor(
            bundle_dir, checkpoint=checkpoint, config_files=configs, overrides=overrides, device=device,
            threshold=threshold,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as error:  # missing or unusable weights, configs: one line, no traceback
        raise SystemExit(f"predict: {type(error).__name__}: {error}") from None
    if image is not None and predictor.input_keys and not (isinstance(text, str) and text.strip()):
        given = "is missing" if text is None else "is empty"
        raise SystemExit(f"--text {given}: with --image it is required, the report that says what to segment.")
    if image is not None:
        try:
            result = predictor.predict_file(image, text, output_dir, overwrite=overwrite)
        except (ValueError, FileNotFoundError, FileExistsError) as error:  # unreadable input, existing output
            raise SystemExit(f"predict: {type(error).__name__}: {error}") from None
        print(f"mask: {result.mask_path}\noverlay: {result.overlay_path}\nforeground voxels: {result.foreground}")
        return
    summary = predict_csv(predictor, csv, output_dir, image_root=image_root, overwrite=overwrite, progress=progress)
    print(summary.report())
    if summary.failures:
        raise SystemExit(1)


if __name__ == "__main__":
    fire.Fire(checked_flags(main))

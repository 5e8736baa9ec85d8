"""Records for inference: a folder of images (with one shared report, or each image's report file beside it) or a
datalist JSON (with a report per image)."""

from __future__ import annotations

import glob
import os

from monai_ext.data.datalist import load_text_datalist

__all__ = ["inference_records"]


def inference_records(
    dataset_dir: str,
    datalist_file: str | None = None,
    image_glob: str = "*.png",
    text: str | None = None,
    default_text: str | None = None,
    key: str = "test",
) -> list[dict]:
    """Build ``[{"image": path, "text": report}, ...]`` for an inference run.

    With ``datalist_file`` (decathlon JSON; entries may carry ``text``) the entries under ``key`` are used, paths
    relative to ``dataset_dir``; otherwise every file matching ``image_glob`` in ``dataset_dir``. ``text`` overrides the
    report for all images; an image without a report gets ``default_text`` when it is given, else no ``text`` entry.

    Report files beside the images (``case_001.png`` -> ``case_001.txt``) are read later, by
    :class:`monai_ext.text.SidecarReportd` in the bundle's preprocessing: an empty or unreadable report file is then
    one failed item of the run (see :class:`monai_ext.data.SkipFailedDataset`), not the end of it.

    Raises:
        FileNotFoundError: the folder or datalist does not exist, or nothing matches.
    """
    if datalist_file:
        records = load_text_datalist(datalist_file, key=key, base_dir=dataset_dir)
    else:
        if not os.path.isdir(dataset_dir):
            raise FileNotFoundError(f"Inference folder does not exist: {dataset_dir}")
        paths = sorted(glob.glob(os.path.join(dataset_dir, image_glob)))
        if not paths:
            raise FileNotFoundError(f"No image matches '{image_glob}' in {dataset_dir}")
        records = [{"image": os.path.abspath(p)} for p in paths]
    for record in records:
        if text is not None:
            record["text"] = text
        elif not record.get("text") and default_text is not None:
            record["text"] = default_text
    return records

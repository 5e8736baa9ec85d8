"""Records for inference: a folder of images (with one shared report, or each image's report file beside it) or a
datalist JSON (with a report per image)."""

from __future__ import annotations

import glob
import os

from monai_ext.text.report_file import read_sidecar_report

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
    report for all images; an image without a report takes the text file beside it (``case_001.png`` ->
    ``case_001.txt``, :func:`monai_ext.text.read_sidecar_report`) when there is one, else ``default_text``.

    Raises:
        FileNotFoundError: the folder or datalist does not exist, or nothing matches.
        ValueError: an image has no report and there is no ``default_text``; a report file is empty or not UTF-8.
    """
    if datalist_file:
        from monai_ext.data.datalist import load_text_datalist

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
        elif not record.get("text"):
            record["text"] = read_sidecar_report(record["image"])
        if not record.get("text"):
            if default_text is None:
                raise ValueError(f"No report for {record['image']} and no default text given.")
            record["text"] = default_text
    return records

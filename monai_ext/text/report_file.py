"""Reports kept as text files beside their images (``case_001.png`` and ``case_001.txt``).

MONAI Label's datastore hands a training task items with ``image`` and ``label`` only; a study's report written next to
its image is how a text-guided bundle gets it there (:class:`SidecarReportd`).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["SidecarReportd", "read_sidecar_report", "sidecar_report_path"]


def sidecar_report_path(image: str | os.PathLike, suffix: str = ".txt") -> str:
    """The report file of ``image``: its path with the image extension replaced by ``suffix`` (``a/b.nii.gz`` ->
    ``a/b.txt``); a DICOM series folder ``a/series`` gives ``a/series.txt``."""
    path = os.fspath(image).rstrip("/\\")
    if os.path.isdir(path):
        return path + suffix
    root, extension = os.path.splitext(path)
    if extension.lower() == ".gz":
        root = os.path.splitext(root)[0]
    return root + suffix


def read_sidecar_report(image: str | os.PathLike, suffix: str = ".txt") -> str | None:
    """The stripped UTF-8 text of ``image``'s report file (:func:`sidecar_report_path`), or None when there is none.

    Raises:
        ValueError: the report file is empty or not UTF-8 text; the message names the file.
    """
    report_file = sidecar_report_path(image, suffix)
    if not os.path.isfile(report_file):
        return None
    try:
        with open(report_file, encoding="utf-8") as f:
            report = f.read().strip()
    except UnicodeDecodeError as error:
        raise ValueError(f"Report file '{report_file}' (of image '{image}') is not UTF-8 text: {error}.") from error
    if not report:
        raise ValueError(f"Report file '{report_file}' (of image '{image}') is empty; write the report or delete it.")
    return report


class SidecarReportd(MapTransform):
    """Fill a missing (or ``None``) text entry with the report file beside the item's image, when there is one.

    The image entry is a path (before loading) or a ``MetaTensor`` whose ``filename_or_obj`` names its file; the report
    is :func:`read_sidecar_report` of it. Items that already have a text keep it; items
    without a report file are left as they are (follow with
    :class:`monai_ext.text.transforms.DefaultTextd` for a default prompt).

    Args:
        keys: entries that receive the report, usually ``"text"``.
        image_key: the entry naming the image.
        suffix: the report file's extension.

    Raises (when called):
        ValueError: the report file is empty or not UTF-8 text; the message names the file.

    Example::

        SidecarReportd(keys="text")({"image": "studies/case_001.png"})["text"]  # the text of studies/case_001.txt
    """

    def __init__(self, keys: KeysCollection = "text", image_key: str = "image", suffix: str = ".txt"):
        super().__init__(keys, allow_missing_keys=True)
        self.image_key = image_key
        self.suffix = suffix

    def _image_path(self, data: Mapping[Hashable, Any]) -> str | None:
        image = data.get(self.image_key)
        if isinstance(image, (str, os.PathLike)):
            return os.fspath(image)
        source = (getattr(image, "meta", None) or {}).get("filename_or_obj")
        return str(source) if source else None

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        missing = [key for key in self.keys if d.get(key) is None]
        image = self._image_path(d) if missing else None
        report = None if image is None else read_sidecar_report(image, self.suffix)
        if report is not None:
            for key in missing:
                d[key] = report
        return d

"""The label map of a run checked against the label files of its dataset before the first iteration."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ignite.engine import Engine, Events
from monai_ext.data.label_maps import check_label_map, label_map_from_values, label_map_name

__all__ = ["LabelMapCheck"]

logger = logging.getLogger(__name__)


class LabelMapCheck:
    """Before an engine's first iteration, check the label map its pipeline applies (``MapLabelValued`` with
    ``label_orig_values`` -> ``label_target_values``) against the label files of its dataset
    (:func:`monai_ext.data.check_label_map`: background the most frequent class, the optic cup inside the disc rim /
    the LV cavity inside the myocardium). A map that contradicts the files stops the run with a
    :class:`~monai_ext.data.LabelMapError` naming the files, the values and the map that fits.

    The files are the ``label`` entries of the records of the engine's dataset (``engine.data_loader.dataset.data``,
    as MONAI's ``Dataset`` / ``CacheDataset`` hold them), up to ``max_files`` of them.

    Args:
        label_orig_values: the values stored in the label files (empty: stored as class indices).
        label_target_values: the class each of them becomes.
        task: ``"fundus"`` or ``"cardiac"`` (:data:`monai_ext.data.LABEL_CLASSES`).
        max_files: label files read at most.

    Example::

        LabelMapCheck([255, 128], [1, 2], task="fundus").attach(trainer)
    """

    def __init__(
        self,
        label_orig_values: Sequence[int] = (),
        label_target_values: Sequence[int] = (),
        task: str = "fundus",
        max_files: int | None = 20,
    ):
        self.label_map = label_map_from_values(label_orig_values, label_target_values)
        self.task = task
        self.max_files = max_files

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        records = getattr(getattr(getattr(engine, "data_loader", None), "dataset", None), "data", None)
        if not isinstance(records, Sequence):
            raise TypeError(
                "LabelMapCheck needs an engine whose data_loader.dataset holds its records in 'data' (a MONAI "
                f"Dataset), got {type(getattr(engine, 'data_loader', None)).__name__}."
            )
        files = [r["label"] for r in records if isinstance(r, dict) and isinstance(r.get("label"), str)]
        if not files:
            raise ValueError("LabelMapCheck: the dataset's records name no label files to check the label map against.")
        summary = check_label_map(
            files, self.label_map, self.task, label_map_name(self.label_map, self.task), self.max_files
        )
        logger.info(
            "Label map checked on %d label files: value -> class %s, background most frequent",
            len(summary["files"]),
            summary["map"],
        )

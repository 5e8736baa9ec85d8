"""Segmentation reports (per class or per region) from an evaluator's output."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from ignite.engine import Engine, Events
from monai_ext.handlers.utils import as_index_map, item_name, item_spacing, output_items
from monai_ext.metrics import SegmentationReport

__all__ = ["SegmentationReportWriter"]

logger = logging.getLogger(__name__)


class SegmentationReportWriter:
    """Accumulates per-image and dataset-level Dice, IoU, HD95 and NSD over an evaluator run and writes
    ``report.json``, ``per_image.csv`` and ``report.md`` into ``output_dir`` when the run completes
    (see :class:`monai_ext.metrics.SegmentationReport`).

    HD95 and NSD use the spacing the pipeline recorded per image (:class:`monai_ext.data.RecordSpacingd`: millimetres
    for NIfTI/DICOM, pixels of the original image for PNG/JPEG), else pixels of the evaluated (network-sized) images.

    Args:
        output_dir: where the report goes.
        num_classes: foreground classes for binary (1) or number of classes including background for index maps.
        class_names: names used in the report.
        regions: report regions instead of classes, ``{name: label values}`` (a region is the union of its labels).
        overwrite: replace an existing report (a re-evaluation), else refuse.
        text_key: the item's report text, copied into ``per_image.csv`` when it is a string.

    Example::

        SegmentationReportWriter(output_dir="eval").attach(evaluator)
        SegmentationReportWriter("eval", num_classes=3, regions={"optic disc": [1, 2], "optic cup": [2]})
    """

    def __init__(
        self,
        output_dir: str,
        num_classes: int = 1,
        class_names: Sequence[str] | None = None,
        regions: Mapping[str, Sequence[int]] | None = None,
        overwrite: bool = True,
        text_key: str = "text",
    ):
        self.output_dir = output_dir
        # Passed on to each run's SegmentationReport.
        self.report_options = {"num_classes": num_classes, "class_names": class_names, "regions": regions}
        self.overwrite = overwrite
        self.text_key = text_key
        self.report: SegmentationReport | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._add)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _start(self, engine: Engine) -> None:
        self.report = SegmentationReport(**self.report_options)

    def _add(self, engine: Engine) -> None:
        for i, item in enumerate(output_items(engine)):
            if item.get("label") is None:
                raise ValueError("SegmentationReportWriter needs labels; use OverlayWriter for unlabelled inference.")
            extra = {self.text_key: item[self.text_key]} if isinstance(item.get(self.text_key), str) else None
            self.report.add(
                item_name(item, fallback=f"item{engine.state.iteration:05d}_{i}"),
                as_index_map(item["pred"]),
                as_index_map(item["label"]),
                spacing=item_spacing(item),
                extra=extra,
            )

    def _write(self, engine: Engine) -> None:
        self.report.write(self.output_dir, overwrite=self.overwrite)
        logger.info("Segmentation report written to %s\n%s", self.output_dir, self.report.format_markdown())

"""Segmentation reports (per class or per region) from an evaluator's output."""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ignite.engine import Engine, Events

from monai_ext.flags import ensure_flag
from monai_ext.handlers.utils import as_index_map, item_name, item_spacing, output_items
from monai_ext.io import atomic_write_json, atomic_write_text
from monai_ext.metrics import SegmentationReport

__all__ = ["SegmentationReportWriter", "RegionReportWriter"]

logger = logging.getLogger(__name__)


class SegmentationReportWriter:
    """Accumulates per-image and dataset-level Dice, IoU, HD95 and NSD over an evaluator run and writes
    ``report.json``, ``per_image.csv`` and ``report.md`` into ``output_dir`` when the run completes.

    Args:
        output_dir: where the report goes.
        num_classes: foreground classes for binary (1) or number of classes including background for index maps.
        class_names: names used in the report.
        overwrite: replace an existing report (a re-evaluation), else refuse.

    Example::

        SegmentationReportWriter(output_dir="eval").attach(evaluator)
    """

    def __init__(
        self,
        output_dir: str,
        num_classes: int = 1,
        class_names: Sequence[str] | None = None,
        overwrite: bool = True,
        text_key: str = "text",
    ):
        self.output_dir = output_dir
        self.num_classes = num_classes
        self.class_names = class_names
        self.overwrite = ensure_flag(overwrite, "overwrite")
        self.text_key = text_key
        self.report: SegmentationReport | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._add)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _start(self, engine: Engine) -> None:
        self.report = SegmentationReport(num_classes=self.num_classes, class_names=self.class_names)

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


class RegionReportWriter:
    """Evaluator handler: Dice, IoU, HD95 and NSD per region, a region being the union of some label values.

    Nested structures are reported as clinicians read them: for fundus the network predicts exclusive classes
    (1 disc rim, 2 cup) while the optic disc is ``label in {1, 2}``. Writes ``report.json`` (per region: per-image mean
    and dataset-level values, empty-mask counts; plus ``mean_over_regions``), ``per_image.csv`` and ``report.md`` to
    ``output_dir`` when the run completes. HD95 and NSD use the spacing the pipeline recorded per image
    (:class:`monai_ext.data.RecordSpacingd`: millimetres for NIfTI/DICOM, pixels of the original image for PNG/JPEG),
    else pixels of the evaluated (network-sized) images.

    Example::

        RegionReportWriter("eval", regions={"optic disc": [1, 2], "optic cup": [2]}).attach(evaluator)
    """

    def __init__(self, output_dir: str, regions: Mapping[str, Sequence[int]], overwrite: bool = True):
        if not regions:
            raise ValueError("RegionReportWriter needs at least one region.")
        self.output_dir = output_dir
        self.regions = {str(name): [int(v) for v in values] for name, values in regions.items()}
        self.overwrite = overwrite
        self.reports: dict[str, SegmentationReport] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._add)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _start(self, engine: Engine | None = None) -> None:
        self.reports = {name: SegmentationReport(num_classes=1, class_names=[name]) for name in self.regions}

    def add(self, name: str, pred: Any, label: Any, spacing: Sequence[float] | None = None) -> None:
        """Add one image's index maps (prediction and label), with its pixel spacing for HD95 and NSD."""
        pred, label = np.asarray(pred), np.asarray(label)
        for region, values in self.regions.items():
            self.reports[region].add(name, np.isin(pred, values), np.isin(label, values), spacing=spacing)

    def _add(self, engine: Engine) -> None:
        for i, item in enumerate(output_items(engine)):
            if item.get("label") is None:
                raise ValueError("RegionReportWriter needs labels.")
            name = item_name(item, fallback=f"item{engine.state.iteration:05d}_{i}")
            self.add(name, as_index_map(item["pred"]), as_index_map(item["label"]), spacing=item_spacing(item))

    def summary(self) -> dict[str, Any]:
        regions = {}
        for region, report in self.reports.items():
            s = report.summary()
            regions[region] = {
                "labels": self.regions[region],
                "per_image_mean": s["per_image_mean"][region],
                "dataset_level": s["dataset_level"][region],
                "counts": s["counts"][region],
            }

        def mean(kind: str, metric: str) -> float | None:
            values = [r[kind].get(metric) for r in regions.values()]
            values = [v for v in values if v is not None]
            return float(np.mean(values)) if values else None

        first = next(iter(self.reports.values()))
        return {
            "num_images": len(first),
            "region_names": list(self.regions),
            "regions": regions,
            "mean_over_regions": {
                "per_image_mean": {m: mean("per_image_mean", m) for m in ("dice", "iou", "hd95", "nsd")},
                "dataset_level": {m: mean("dataset_level", m) for m in ("dice", "iou")},
            },
            "conventions": first.summary()["conventions"],
        }

    def format_markdown(self) -> str:
        summary = self.summary()

        def fmt(value, scale=100.0):
            return "n/a" if value is None else f"{value * scale:.2f}"

        lines = [
            f"Images: {summary['num_images']}. HD95 in the images' own units: millimetres for NIfTI/DICOM, pixels of "
            "the original image for PNG/JPEG.",
            "",
            "| region | labels | Dice per-image mean (%) | Dice dataset-level (%) | IoU per-image mean (%) | HD95 | NSD (%) |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        rows = list(summary["regions"].items()) + [("mean", {**summary["mean_over_regions"], "labels": ""})]
        for name, r in rows:
            p, d = r["per_image_mean"], r["dataset_level"]
            labels = ",".join(str(v) for v in r["labels"]) if r["labels"] else ""
            lines.append(
                f"| {name} | {labels} | {fmt(p['dice'])} | {fmt(d['dice'])} | {fmt(p['iou'])} | {fmt(p['hd95'], 1.0)} "
                f"| {fmt(p['nsd'])} |"
            )
        return "\n".join(lines) + "\n"

    def _write(self, engine: Engine | None = None) -> None:
        os.makedirs(self.output_dir, exist_ok=True)
        atomic_write_json(os.path.join(self.output_dir, "report.json"), self.summary(), overwrite=self.overwrite)
        rows: dict[str, dict] = {}
        for report in self.reports.values():
            for row in report.per_image_rows():
                rows.setdefault(row["name"], {}).update(row)
        columns = list(dict.fromkeys(k for row in rows.values() for k in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows.values())
        atomic_write_text(os.path.join(self.output_dir, "per_image.csv"), buffer.getvalue(), overwrite=self.overwrite)
        markdown = self.format_markdown()
        atomic_write_text(os.path.join(self.output_dir, "report.md"), markdown, overwrite=self.overwrite)
        logger.info("Region report written to %s\n%s", self.output_dir, markdown)

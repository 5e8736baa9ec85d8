"""Per-volume segmentation reports from an evaluator that runs a 2D model over the slices of volumes."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch
from ignite.engine import Engine, Events
from monai_ext.handlers.utils import as_index_map, item_spacing, output_items
from monai_ext.metrics import SliceVolumeReport

__all__ = ["VolumeReportWriter"]

logger = logging.getLogger(__name__)


class VolumeReportWriter:
    """Stacks an evaluator's slice predictions back into their volumes and writes 3D metrics per volume
    (:class:`monai_ext.metrics.SliceVolumeReport`): ``report.json``, ``per_volume.csv`` and ``report.md`` in
    ``output_dir`` when the run completes.

    Each item must carry its volume's ``name`` and its ``slice_index`` (the slice records of
    :class:`monai_ext.data.VolumeSlicer` / :func:`monai_ext.data.prepare_cardiac_domains`; ``num_slices`` when present
    lets a missing slice be reported). HD95 uses the voxel size the pipeline recorded: ``spacing`` (in-plane, after
    resizing) and ``slice_spacing`` (:class:`monai_ext.data.RecordSpacingd` with ``slice_spacing_key``), in mm for
    NIfTI slices; without them, unit spacing.

    Args:
        output_dir: where the report goes.
        num_classes, class_names, regions: as for :class:`monai_ext.handlers.SegmentationReportWriter`.
        overwrite: replace an existing report, else refuse.

    Example::

        VolumeReportWriter("eval/volumes", num_classes=4, regions={"LV": [1], "MYO": [2], "RV": [3]}).attach(evaluator)
    """

    def __init__(
        self,
        output_dir: str,
        num_classes: int = 1,
        class_names: Sequence[str] | None = None,
        regions: Mapping[str, Sequence[int]] | None = None,
        overwrite: bool = True,
    ):
        self.output_dir = output_dir
        self.report = SliceVolumeReport(num_classes=num_classes, class_names=class_names, regions=regions)
        self.overwrite = overwrite

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._add)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _start(self, engine: Engine) -> None:
        self.report.reset()

    def _add(self, engine: Engine) -> None:
        for item in output_items(engine):
            missing = [k for k in ("name", "slice_index", "label") if item.get(k) is None]
            if missing:
                raise ValueError(
                    f"VolumeReportWriter needs each item's volume 'name', 'slice_index' and 'label'; an item lacks "
                    f"{missing}. Evaluate slice records of VolumeSlicer (scripts/slice_volumes.py)."
                )
            spacing = item_spacing(item)
            if spacing is not None:
                slice_spacing = item.get("slice_spacing")
                spacing = [*spacing, 1.0 if slice_spacing is None else float(torch.as_tensor(slice_spacing))]
            num_slices = item.get("num_slices")
            self.report.add(
                str(item["name"]),
                int(torch.as_tensor(item["slice_index"])),
                as_index_map(item["pred"]),
                as_index_map(item["label"]),
                spacing=spacing,
                num_slices=None if num_slices is None else int(torch.as_tensor(num_slices)),
            )

    def _write(self, engine: Engine) -> None:
        report = self.report.report()
        report.write(self.output_dir, overwrite=self.overwrite)
        logger.info("Per-volume report written to %s\n%s", self.output_dir, report.format_markdown())

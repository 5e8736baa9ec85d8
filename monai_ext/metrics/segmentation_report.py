"""Per-image (or per-volume) and dataset-level segmentation metrics (Dice, IoU, HD95, NSD) per class or per region,
with explicit empty-mask rules."""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou, compute_surface_dice
from monai.utils import convert_to_tensor
from monai_ext.io import atomic_write_json, atomic_write_text

__all__ = ["SegmentationReport", "UNITS"]

METRICS = ("dice", "iou", "hd95", "nsd")

# What one evaluated item is: a 2D image, or a volume (e.g. the 2D slices of a volume stacked back, see
# monai_ext.metrics.SliceVolumeReport); the summary keys, the CSV file and the texts name it.
UNITS = ("image", "volume")

# Which case each image/class falls in; the empty-mask rules depend on it. PRED_EMPTY: prediction empty, label not;
# LABEL_EMPTY: label empty, prediction not.
BOTH_PRESENT, BOTH_EMPTY, PRED_EMPTY, LABEL_EMPTY = "both_present", "both_empty", "pred_empty", "label_empty"

_PER_ITEM = {
    "image": "metrics computed on each image, then averaged over images (LViT convention)",
    "volume": (
        "metrics computed on each 3D volume (its 2D slices stacked back), then averaged over volumes "
        "(SLAug/CSDG cardiac convention)"
    ),
}


def _conventions(unit: str) -> dict[str, str]:
    return {
        f"per_{unit}_mean": _PER_ITEM[unit],
        "dataset_level": (
            "Dice = 2*sum(intersection)/(sum(pred)+sum(label)) and IoU = sum(intersection)/sum(union), sums over all "
            f"pixels of all {unit}s (GuideDecoder's convention); not comparable with per-{unit} means"
        ),
        "empty_masks": (
            "prediction and label both empty: Dice=IoU=1, HD95=0, NSD=1 (counted in the means); exactly one empty: "
            "Dice=IoU=0, NSD=0, HD95 undefined (excluded from the HD95 mean, counted as hd95_undefined)"
        ),
        "units": (
            f"HD95 and the NSD tolerance are in spacing units: the {unit}'s own when its pipeline records it "
            "(monai_ext.data.RecordSpacingd: mm for NIfTI/DICOM, pixels of the original image for PNG/JPEG), "
            f"else pixels of the evaluated {unit}"
        ),
    }


def _nan_to_none(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def _mean(values: Sequence[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


class SegmentationReport:
    """Accumulates segmentation metrics image by image and summarises them in both published conventions.

    For every image and evaluated class it computes Dice and IoU (``monai.metrics.compute_dice``/``compute_iou``),
    the 95th percentile Hausdorff distance (``compute_hausdorff_distance(percentile=95)``) and the normalised surface
    Dice at ``nsd_tolerance`` (``compute_surface_dice``). Empty masks follow fixed, documented rules instead of MONAI's
    NaN/inf:

    - prediction and label both empty: Dice = IoU = 1, HD95 = 0, NSD = 1, counted in every mean;
    - exactly one empty: Dice = IoU = 0, NSD = 0 and HD95 undefined (NaN): left out of the HD95 mean and counted as
      ``hd95_undefined``.

    The summary gives ``per_image_mean`` (LViT's convention) and ``dataset_level`` Dice/IoU from intersections and sizes
    summed over the whole set (GuideDecoder's convention). The two differ whenever images differ in lesion size.

    With ``regions`` the report evaluates regions instead of classes, a region being the union of some label values:
    nested structures are then reported as clinicians read them. For fundus the network predicts exclusive classes
    (1 disc rim, 2 cup) while the optic disc is ``label in {1, 2}``: ``regions={"optic disc": [1, 2], "optic cup": [2]}``.

    Args:
        num_classes: 1 for binary masks (values 0/1); for index maps, the number of labels including background 0.
        class_names: names of the labels: one name for binary, else ``num_classes`` names (or ``num_classes - 1``
            foreground names); default "foreground" / "background", "class_1", ...
        regions: ``{name: label values}`` to evaluate instead of the classes (regions may overlap); None: every class.
        include_background: also evaluate label 0 (background) as a class (without ``regions`` only).
        spacing: pixel/voxel spacing for HD95 and NSD (a number or one per spatial axis); None: unit spacing.
        nsd_tolerance: boundary tolerance of NSD, in spacing units.
        spatial_dims: 2 for images, 3 for volumes; fixing it keeps a [C, H, W] one-hot from passing for a volume.
        unit: what one added item is, ``"image"`` or ``"volume"`` (one of :data:`UNITS`): the summary's keys
            (``num_images``/``per_image_mean`` or ``num_volumes``/``per_volume_mean``), the CSV (``per_image.csv`` or
            ``per_volume.csv``) and the texts name it.

    ``add`` takes a prediction and a label as binary or index maps shaped [H, W] or [1, H, W] (with
    ``spatial_dims=3``: [H, W, D] or [1, H, W, D]), torch or numpy, integral values.

    Example::

        report = SegmentationReport()
        report.add("case1", pred_mask, label_mask, extra={"text": report_text})
        report.summary()["dataset_level"]["foreground"]["dice"]
        report.write("eval/")  # report.json, per_image.csv, report.md

        fundus = SegmentationReport(num_classes=3, regions={"optic disc": [1, 2], "optic cup": [2]})
        fundus.add("eye1", pred_index_map, label_index_map)
        fundus.summary()["per_image_mean"]["mean_over_regions"]["dice"]
    """

    def __init__(
        self,
        num_classes: int = 1,
        class_names: Sequence[str] | None = None,
        regions: Mapping[str, Sequence[int]] | None = None,
        include_background: bool = False,
        spacing: float | Sequence[float] | None = None,
        nsd_tolerance: float = 2.0,
        spatial_dims: int = 2,
        unit: str = "image",
    ):
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {unit!r}.")
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        if not nsd_tolerance >= 0:
            raise ValueError(f"nsd_tolerance must be a non-negative number, got {nsd_tolerance}.")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if regions is not None and include_background:
            raise ValueError("include_background applies to classes; with regions, list label 0 in a region instead.")
        self.num_classes = int(num_classes)
        self.spatial_dims = spatial_dims
        self.unit = unit
        # Binary masks are index maps with two labels; the same code then serves both cases.
        self.num_labels = max(2, self.num_classes)
        self.label_names = self._label_names(class_names)
        self.include_background = include_background
        self.regions = None if regions is None else self._checked_regions(regions)
        first = 0 if include_background else 1
        # Name of each evaluated class or region -> the label values it is the union of.
        self.evaluated = self.regions or {self.label_names[i]: [i] for i in range(first, self.num_labels)}
        self.class_names = list(self.evaluated)  # the names the records, summary and CSV columns use
        self.spacing = spacing
        self.nsd_tolerance = float(nsd_tolerance)
        self.reset()

    def _label_names(self, class_names: Sequence[str] | None) -> list[str]:
        if class_names is None:
            if self.num_classes == 1:
                return ["background", "foreground"]
            return ["background"] + [f"class_{i}" for i in range(1, self.num_labels)]
        names = [str(n) for n in ([class_names] if isinstance(class_names, str) else class_names)]
        if len(names) == self.num_labels - 1:
            names = ["background"] + names
        if len(names) != self.num_labels or len(set(names)) != len(names):
            raise ValueError(
                f"class_names {names} do not fit num_classes={self.num_classes}: give {self.num_labels - 1} foreground "
                f"names or {self.num_labels} names including background, all different."
            )
        return names

    def _checked_regions(self, regions: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
        if not regions:
            raise ValueError("regions must name at least one region, e.g. {'optic disc': [1, 2]}.")
        checked = {}
        for name, values in regions.items():
            values = [int(v) for v in values]
            if not values or not all(0 <= v < self.num_labels for v in values):
                raise ValueError(
                    f"Region '{name}' has label values {values}; expected some of 0..{self.num_labels - 1} for "
                    f"num_classes={self.num_classes}."
                )
            checked[str(name)] = values
        return checked

    def reset(self) -> None:
        """Forget all images added so far."""
        self.records: list[dict[str, Any]] = []
        self._names: set[str] = set()
        zeros = dict.fromkeys(self.class_names, 0.0)
        self._totals = {"intersection": dict(zeros), "pred": dict(zeros), "label": dict(zeros), "union": dict(zeros)}

    def __len__(self) -> int:
        return len(self.records)

    def _index_map(self, value: Any, what: str, name: str) -> torch.Tensor:
        tensor = convert_to_tensor(value, track_meta=False).detach().cpu()
        shape = tuple(tensor.shape)
        if tensor.ndim == self.spatial_dims + 1 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.ndim != self.spatial_dims:
            expected = "[H, W] or [1, H, W]" if self.spatial_dims == 2 else "[H, W, D] or [1, H, W, D]"
            raise ValueError(
                f"SegmentationReport '{name}': {what} has shape {shape}; expected a {self.spatial_dims}D index map "
                f"{expected} (take argmax over class channels first; set spatial_dims=3 for volumes)."
            )
        if tensor.dtype == torch.bool:
            tensor = tensor.to(torch.uint8)
        if tensor.is_floating_point():
            if not torch.isfinite(tensor).all() or not torch.equal(tensor, tensor.round()):
                raise ValueError(
                    f"SegmentationReport '{name}': {what} has non-integer values (probabilities or logits?); "
                    "threshold or argmax it into a label map first."
                )
        tensor = tensor.long()
        low, high = int(tensor.min()), int(tensor.max())
        if low < 0 or high >= self.num_labels:
            raise ValueError(
                f"SegmentationReport '{name}': {what} values span [{low}, {high}], expected labels 0..{self.num_labels - 1}"
                f" for num_classes={self.num_classes} (e.g. a 0/255 PNG mask must be divided by 255)."
            )
        return tensor

    def add(
        self,
        name: str,
        pred: Any,
        label: Any,
        extra: Mapping[str, Any] | None = None,
        spacing: float | Sequence[float] | None = None,
    ) -> dict[str, Any]:
        """Evaluate one image and remember its metrics.

        Args:
            name: unique identifier of the image (first column of per_image.csv).
            pred: predicted binary/index map.
            label: ground-truth binary/index map of the same shape.
            extra: additional per-image columns for the CSV (e.g. the report text).
            spacing: this image's spacing, overriding the report's (e.g. CT slices of different resolution).

        Returns:
            the image's record: ``{"name", <class>: {"dice", "iou", "hd95", "nsd", "case"}, **extra}``.
        """
        name = str(name)
        if name in self._names:
            raise ValueError(f"SegmentationReport: an image named '{name}' was already added; names must be unique.")
        pred_map = self._index_map(pred, "prediction", name)
        label_map = self._index_map(label, "label", name)
        if pred_map.shape != label_map.shape:
            raise ValueError(
                f"SegmentationReport '{name}': prediction shape {tuple(pred_map.shape)} differs from label shape "
                f"{tuple(label_map.shape)}."
            )
        spacing = self.spacing if spacing is None else spacing
        pred_onehot, label_onehot = self._masks(pred_map), self._masks(label_map)
        num_evaluated = len(self.evaluated)
        spatial = tuple(range(2, pred_onehot.ndim))
        intersection = (pred_onehot * label_onehot).sum(spatial)[0]
        pred_size, label_size = pred_onehot.sum(spatial)[0], label_onehot.sum(spatial)[0]
        dice = compute_dice(pred_onehot, label_onehot, include_background=True, ignore_empty=False)[0]
        iou = compute_iou(pred_onehot, label_onehot, include_background=True, ignore_empty=False)[0]
        present = [i for i in range(num_evaluated) if pred_size[i] > 0 and label_size[i] > 0]
        hd95 = torch.full((num_evaluated,), float("nan"), dtype=torch.float64)
        nsd = torch.zeros(num_evaluated, dtype=torch.float64)
        if present:
            pred_present, label_present = pred_onehot[:, present], label_onehot[:, present]
            with warnings.catch_warnings():
                # MONAI's own internal call uses an argument it deprecated; nothing for the caller to change.
                warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*")
                hd95[present] = compute_hausdorff_distance(
                    pred_present, label_present, include_background=True, percentile=95, spacing=spacing
                )[0].double()
                nsd[present] = compute_surface_dice(
                    pred_present,
                    label_present,
                    class_thresholds=[self.nsd_tolerance] * len(present),
                    include_background=True,
                    spacing=spacing,
                )[0].double()

        record: dict[str, Any] = {"name": name}
        for i, class_name in enumerate(self.class_names):
            if pred_size[i] == 0 and label_size[i] == 0:
                case, values = BOTH_EMPTY, {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "nsd": 1.0}
            elif pred_size[i] == 0 or label_size[i] == 0:
                case = PRED_EMPTY if pred_size[i] == 0 else LABEL_EMPTY
                values = {"dice": 0.0, "iou": 0.0, "hd95": float("nan"), "nsd": 0.0}
            else:
                case = BOTH_PRESENT
                values = {"dice": float(dice[i]), "iou": float(iou[i]), "hd95": float(hd95[i]), "nsd": float(nsd[i])}
            record[class_name] = {**values, "case": case}
            self._totals["intersection"][class_name] += float(intersection[i])
            self._totals["pred"][class_name] += float(pred_size[i])
            self._totals["label"][class_name] += float(label_size[i])
            self._totals["union"][class_name] += float(pred_size[i] + label_size[i] - intersection[i])
        for key, value in (extra or {}).items():
            if key == "name" or key in self.class_names:
                raise ValueError(f"SegmentationReport '{name}': extra key '{key}' clashes with a metric column.")
            record[key] = value
        self.records.append(record)
        self._names.add(name)
        return record

    def _masks(self, index_map: torch.Tensor) -> torch.Tensor:
        """[1, C, *spatial] masks of the evaluated classes or regions, the layout MONAI's metric functions take."""
        masks = [torch.isin(index_map, torch.as_tensor(values)) for values in self.evaluated.values()]
        return torch.stack(masks)[None].double()

    def _dataset_level(self, class_name: str) -> dict[str, float]:
        totals = {k: v[class_name] for k, v in self._totals.items()}
        size = totals["pred"] + totals["label"]
        # A class absent from every prediction and label is a perfect (empty) match, as per image.
        return {
            "dice": 2 * totals["intersection"] / size if size else 1.0,
            "iou": totals["intersection"] / totals["union"] if totals["union"] else 1.0,
        }

    def summary(self) -> dict[str, Any]:
        """Dataset summary (JSON-ready; undefined values are None).

        Returns:
            ``{"unit", "num_images", "classes", "per_image_mean": {class: {dice, iou, hd95, nsd}},
            "dataset_level": {class: {dice, iou}}, "counts": {class: {both_empty, pred_empty, label_empty,
            hd95_undefined, hd95_defined}}, "conventions", "settings"}``; with several classes ``per_image_mean`` and
            ``dataset_level`` also hold ``"mean_over_classes"``. With ``regions``, ``"region_names"`` and ``"regions":
            {region: label values}`` replace ``"classes"``, the metrics are keyed by region and the mean, always there,
            is ``"mean_over_regions"``. With ``unit="volume"`` the keys are ``num_volumes`` and ``per_volume_mean``.
        """
        per_image: dict[str, dict[str, Any]] = {}
        dataset: dict[str, dict[str, Any]] = {}
        counts: dict[str, dict[str, int]] = {}
        for class_name in self.class_names:
            rows = [r[class_name] for r in self.records]
            per_image[class_name] = {m: _mean([r[m] for r in rows]) for m in METRICS}
            dataset[class_name] = self._dataset_level(class_name)
            cases = [r["case"] for r in rows]
            undefined = sum(math.isnan(r["hd95"]) for r in rows)
            counts[class_name] = {
                BOTH_EMPTY: cases.count(BOTH_EMPTY),
                PRED_EMPTY: cases.count(PRED_EMPTY),
                LABEL_EMPTY: cases.count(LABEL_EMPTY),
                "hd95_undefined": undefined,
                "hd95_defined": len(rows) - undefined,
            }
        # Region reports always carry their mean: the domain-generalisation tables read it.
        if len(self.class_names) > 1 or self.regions is not None:
            mean_key = "mean_over_classes" if self.regions is None else "mean_over_regions"
            per_image[mean_key] = {m: _mean([per_image[c][m] for c in self.class_names]) for m in METRICS}
            dataset[mean_key] = {m: _mean([dataset[c][m] for c in self.class_names]) for m in ("dice", "iou")}
        if not self.records:
            per_image = {c: {m: float("nan") for m in METRICS} for c in per_image}
            dataset = {c: {m: float("nan") for m in ("dice", "iou")} for c in dataset}
        return {
            "unit": self.unit,
            f"num_{self.unit}s": len(self.records),
            # The names in order (report.json sorts the keys of its mappings).
            **(
                {"classes": list(self.class_names)}
                if self.regions is None
                else {"region_names": list(self.class_names), "regions": dict(self.regions)}
            ),
            f"per_{self.unit}_mean": {c: {m: _nan_to_none(v) for m, v in d.items()} for c, d in per_image.items()},
            "dataset_level": {c: {m: _nan_to_none(v) for m, v in d.items()} for c, d in dataset.items()},
            "counts": counts,
            "conventions": _conventions(self.unit),
            "settings": {
                "num_classes": self.num_classes,
                "spatial_dims": self.spatial_dims,
                "include_background": self.include_background,
                "spacing": list(self.spacing) if isinstance(self.spacing, Sequence) else self.spacing,
                "nsd_tolerance": self.nsd_tolerance,
            },
        }

    def per_image_rows(self) -> list[dict[str, Any]]:
        """One flat row per image (per volume with ``unit="volume"``): ``name``, ``<class>_<metric>`` and
        ``<class>_case`` columns, then extra columns."""
        rows = []
        for record in self.records:
            row: dict[str, Any] = {"name": record["name"]}
            for class_name in self.class_names:
                for key, value in record[class_name].items():
                    row[f"{class_name}_{key}"] = value
            row.update({k: v for k, v in record.items() if k != "name" and k not in self.class_names})
            rows.append(row)
        return rows

    def format_markdown(self) -> str:
        """A Markdown table of the summary: Dice, IoU and NSD in percent, HD95 in spacing units."""
        summary = self.summary()
        unit = self.unit

        def fmt(value: float | None, scale: float = 100.0) -> str:
            return "n/a" if value is None else f"{value * scale:.2f}"

        columns = ["class"] if self.regions is None else ["region", "labels"]
        columns += [
            f"Dice per-{unit} mean (%)",
            f"IoU per-{unit} mean (%)",
            "Dice dataset-level (%)",
            "IoU dataset-level (%)",
            f"HD95 per-{unit} mean",
            f"NSD@{self.nsd_tolerance:g} per-{unit} mean (%)",
            f"{unit}s with both / only pred / only label empty",
        ]
        lines = [
            f"{summary[f'num_{unit}s']} {unit}s. Per-{unit} mean ({_PER_ITEM[unit]}) and dataset-level "
            "(GuideDecoder's convention) are different conventions; do not compare one with the other. HD95 "
            f"and the NSD tolerance are in the {unit}s' own units when the pipeline records their spacing (millimetres "
            f"for NIfTI/DICOM, pixels of the original image for PNG/JPEG), else in pixels of the evaluated {unit}s.",
            "",
            "| " + " | ".join(columns) + " |",
            "|" + "---|" * len(columns),
        ]
        for class_name in summary[f"per_{unit}_mean"]:
            per_image, dataset = summary[f"per_{unit}_mean"][class_name], summary["dataset_level"][class_name]
            count = summary["counts"].get(class_name)
            empties = "" if count is None else f"{count[BOTH_EMPTY]} / {count[PRED_EMPTY]} / {count[LABEL_EMPTY]}"
            hd95 = fmt(per_image["hd95"], 1.0)
            if count is not None and count["hd95_undefined"]:
                hd95 += f" ({count['hd95_undefined']} undefined)"
            cells = [class_name]
            if self.regions is not None:  # the mean row has no labels of its own
                cells.append(",".join(str(v) for v in self.regions.get(class_name, [])))
            cells += [fmt(per_image["dice"]), fmt(per_image["iou"]), fmt(dataset["dice"]), fmt(dataset["iou"])]
            cells += [hd95, fmt(per_image["nsd"]), empties]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | os.PathLike, overwrite: bool = False) -> dict[str, str]:
        """Write ``report.json`` (summary), ``per_image.csv`` (``per_volume.csv``) and ``report.md`` into ``out_dir``,
        each atomically.

        Raises:
            FileExistsError: one of the files exists and ``overwrite`` is False (checked before anything is written).

        Returns:
            paths of the written files keyed "json", "csv", "markdown".
        """
        paths = {
            "json": os.path.join(out_dir, "report.json"),
            "csv": os.path.join(out_dir, f"per_{self.unit}.csv"),
            "markdown": os.path.join(out_dir, "report.md"),
        }
        if not overwrite:
            existing = [p for p in paths.values() if os.path.lexists(p)]
            if existing:
                raise FileExistsError(f"Report files already exist: {', '.join(existing)}; pass overwrite=True.")
        rows = self.per_image_rows()
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns or ["name"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_json(paths["json"], self.summary(), overwrite=overwrite)
        atomic_write_text(paths["csv"], buffer.getvalue(), overwrite=overwrite)
        atomic_write_text(paths["markdown"], self.format_markdown(), overwrite=overwrite)
        return paths

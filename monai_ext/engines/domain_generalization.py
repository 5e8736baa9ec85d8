"""Single-source domain generalisation (DG) for the VLSA-Net bundle: train on one domain, evaluate on unseen ones.

Pieces, all used by ``scripts/evaluate_dg.py`` and the bundle configs:

* :func:`training_records` / :func:`evaluation_records`: the train/validation/test records of one domain's datalist
  (validation is carved out of the source domain's training list; target domains are never seen before testing).
* :func:`prepare_fundus_domains`, :func:`prepare_cardiac_domains`, :func:`make_demo_data`: one decathlon-style datalist
  per domain from synthetic demo data or real benchmark folder layouts (cardiac volumes are sliced to 2D NIfTI).
* :class:`RegionReportWriter`: an evaluator handler reporting Dice/IoU/HD95/NSD per *region*, a region being a set of
  label values (fundus: optic disc = labels {1, 2}, optic cup = {2}).
* :func:`run_domain_generalization`: trains each variant (full / no_em / no_text / no_alignment / no_em_no_text) with
  the bundle's own configs through :class:`monai.bundle.ConfigWorkflow`, evaluates every target domain with
  ``evaluate.json`` and writes ``dg_results.md``/``dg_results.csv``/``dg_results.json`` atomically.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ignite.engine import Engine, Events

from monai_ext.data.datalist import image_stem
from monai_ext.engines.handlers import _as_index_map, item_name, item_spacing, output_items
from monai_ext.metrics import SegmentationReport
from monai_ext.utils.io import atomic_write_json, atomic_write_text

__all__ = [
    "VARIANTS",
    "FUNDUS_REGIONS",
    "CARDIAC_REGIONS",
    "LABEL_MAPS",
    "training_records",
    "evaluation_records",
    "make_demo_data",
    "prepare_fundus_domains",
    "prepare_cardiac_domains",
    "RegionReportWriter",
    "format_dg_table",
    "run_domain_generalization",
]

logger = logging.getLogger(__name__)

# Ablation variants: config overrides of bundles/vlsanet/configs/train.json.
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_em": {"use_em": False},
    "no_text": {"use_text": False},
    "no_alignment": {"alignment_weight": 0.0},
    "no_em_no_text": {"use_em": False, "use_text": False},
}
# Evaluated regions: name -> label values that make it up.
FUNDUS_REGIONS = {"optic disc": [1, 2], "optic cup": [2]}
CARDIAC_REGIONS = {"LV": [1], "MYO": [2], "RV": [3]}
# Label values in the files -> labels used by the bundle.
LABEL_MAPS = {
    "index": ([], []),  # already 0 background, 1 disc rim / LV, 2 cup / MYO, 3 RV
    "refuge": ([255, 128, 0], [0, 1, 2]),  # REFUGE / DoFE / RIGA+ style: 255 background, 128 disc rim, 0 cup
    "mscmrseg": ([500, 200, 600], [1, 2, 3]),  # MS-CMRSeg 2019: 500 LV, 200 MYO, 600 RV
}
DEMO_DOMAINS = {"fundus": ["domain_a", "domain_b", "domain_c", "domain_d"], "cardiac": ["bssfp", "lge", "t2"]}
IMAGE_DIRS = ("images", "image", "imgs", "img")
MASK_DIRS = ("masks", "mask", "labels", "label", "labelcol", "gt")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".nii.gz", ".nii")


# --------------------------------------------------------------------------------------------------------- records
def _load(datalist_file: str, key: str, base_dir: str | None) -> list[dict]:
    from monai_ext.data.datalist import load_text_datalist

    return load_text_datalist(datalist_file, key=key, base_dir=base_dir)


def _list_keys(datalist_file: str) -> list[str]:
    """Keys of the non-empty lists in a datalist (MONAI's decathlon reader fails on an empty "test" list)."""
    with open(datalist_file, encoding="utf-8") as f:
        content = json.load(f)
    return [k for k, v in content.items() if isinstance(v, list) and v]


def training_records(
    datalist_file: str,
    train_key: str = "training",
    val_key: str | None = None,
    val_fraction: float = 0.2,
    part: str = "train",
    base_dir: str | None = None,
) -> list[dict]:
    """Training (``part="train"``) or validation (``part="val"``) records of the source domain.

    With ``val_key`` the two lists come from the datalist; otherwise the last ``max(1, round(n * val_fraction))`` items
    of ``train_key`` are held out for validation (with a single item it serves both). Target domains are never used.

    Example::

        train = training_records("data/fundus/domain_a/datalist.json", part="train")
    """
    if part not in ("train", "val"):
        raise ValueError(f"part must be 'train' or 'val', got {part!r}.")
    if val_key:
        return _load(datalist_file, train_key if part == "train" else val_key, base_dir)
    records = _load(datalist_file, train_key, base_dir)
    if not records:
        raise ValueError(f"Datalist '{datalist_file}' has no items under '{train_key}' to train on.")
    if len(records) == 1:
        return records
    n_val = min(len(records) - 1, max(1, int(round(len(records) * float(val_fraction)))))
    return records[: len(records) - n_val] if part == "train" else records[len(records) - n_val :]


def evaluation_records(datalist_file: str, key: str = "test", base_dir: str | None = None) -> list[dict]:
    """Records under ``key`` of a datalist; ``key="all"`` joins every list in the file (a whole unseen domain)."""
    if key != "all":
        return _load(datalist_file, key, base_dir)
    records = [r for k in _list_keys(datalist_file) for r in _load(datalist_file, k, base_dir)]
    if not records:
        raise ValueError(f"Datalist '{datalist_file}' holds no items.")
    return records


# ------------------------------------------------------------------------------------------------------ data sets
def _files(folder: str) -> list[str]:
    return sorted(p for p in glob.glob(os.path.join(folder, "*")) if p.lower().endswith(IMAGE_SUFFIXES))


def _pair_images_and_masks(image_dir: str, mask_dir: str) -> tuple[list[dict], list[str]]:
    """Match images and masks by file stem (masks may also be named ``mask_<stem>``, ``<stem>_mask`` or
    ``<stem>_manual``); returns the pairs and the images without a mask."""
    masks = {}
    for path in _files(mask_dir):
        stem = image_stem(path)
        for candidate in (stem, stem.removeprefix("mask_"), stem.removesuffix("_mask"), stem.removesuffix("_manual")):
            masks.setdefault(candidate, path)
    pairs, unmatched = [], []
    for path in _files(image_dir):
        mask = masks.get(image_stem(path))
        if mask is None:
            unmatched.append(path)
        else:
            pairs.append({"image": path, "label": mask})
    return pairs, unmatched


def _find_pairs(domain_dir: str) -> dict[str, list[dict]]:
    """``{"training": [...], "test": [...]}`` from every image folder under ``domain_dir`` with a mask folder beside it;
    folders below a ``test`` directory go to "test", everything else to "training"."""
    groups: dict[str, list[dict]] = {"training": [], "test": []}
    problems = []
    for root, dirs, _ in sorted(os.walk(domain_dir)):
        dirs.sort()
        image_dirs = [d for d in dirs if d.lower() in IMAGE_DIRS]
        mask_dirs = [d for d in dirs if d.lower() in MASK_DIRS]
        if not image_dirs or not mask_dirs:
            continue
        pairs, unmatched = _pair_images_and_masks(os.path.join(root, image_dirs[0]), os.path.join(root, mask_dirs[0]))
        problems += unmatched
        relative = os.path.relpath(root, domain_dir).lower().split(os.sep)
        groups["test" if any(part in ("test", "testing") for part in relative) else "training"] += pairs
    if problems:
        raise FileNotFoundError(f"{len(problems)} image(s) under {domain_dir} have no mask, e.g. {problems[:3]}.")
    if not groups["training"] and not groups["test"]:
        raise FileNotFoundError(
            f"No image/mask folder pair found under {domain_dir}: expected e.g. {domain_dir}/images + {domain_dir}/masks "
            f"(or {domain_dir}/train/ROIs/image + .../mask); image folders are named one of {IMAGE_DIRS}, mask "
            f"folders one of {MASK_DIRS}."
        )
    return groups


def _domain_dirs(data_root: str, domains: Sequence[str] | None) -> list[str]:
    if not os.path.isdir(data_root):
        raise FileNotFoundError(f"Data folder does not exist: {data_root}")
    found = sorted(d for d in os.listdir(data_root) if os.path.isdir(os.path.join(data_root, d)))
    if domains is None:
        return found
    missing = [d for d in domains if d not in found]
    if missing:
        raise FileNotFoundError(f"Domain folder(s) {missing} not found in {data_root}; present: {found}.")
    return list(domains)


def _write_datalist(groups: Mapping[str, list[dict]], json_path: str, base_dir: str) -> str:
    from monai_ext.data.datalist import write_text_datalist

    return write_text_datalist({k: v for k, v in groups.items() if v}, json_path, base_dir=base_dir, overwrite=True)


def prepare_fundus_domains(
    data_root: str, work_dir: str, domains: Sequence[str] | None = None
) -> dict[str, dict[str, str]]:
    """One datalist per fundus domain folder of ``data_root``.

    A domain folder with a ``datalist.json`` (the synthetic demo layout) is used as it is. Otherwise image/mask folder
    pairs are searched below it (``<domain>/images`` + ``<domain>/masks``, or DoFE/RIGA+-style
    ``<domain>/train/ROIs/image`` + ``.../mask`` and ``<domain>/test/...``) and a datalist is written to
    ``work_dir/datalists/<domain>/datalist.json`` with paths relative to the domain folder.

    Returns:
        ``{domain: {"datalist": path, "base_dir": folder the paths are relative to}}``.
    """
    prepared = {}
    for domain in _domain_dirs(data_root, domains):
        domain_dir = os.path.abspath(os.path.join(data_root, domain))
        existing = os.path.join(domain_dir, "datalist.json")
        if os.path.isfile(existing):
            prepared[domain] = {"datalist": existing, "base_dir": domain_dir}
            continue
        json_path = os.path.join(os.path.abspath(work_dir), "datalists", domain, "datalist.json")
        _write_datalist(_find_pairs(domain_dir), json_path, base_dir=domain_dir)
        prepared[domain] = {"datalist": json_path, "base_dir": domain_dir}
    return prepared


def prepare_cardiac_domains(
    data_root: str, out_dir: str, domains: Sequence[str] | None = None, overwrite: bool = True
) -> dict[str, dict[str, str]]:
    """Slice every cardiac volume of each domain into 2D NIfTI files and write one datalist per domain.

    Volumes come from ``<domain>/datalist.json`` (the synthetic layout) or from ``<domain>/images`` +
    ``<domain>/labels`` (same file names, or labels named ``<stem>_manual``); slices and the datalist go to
    ``out_dir/<domain>/``. A domain whose slice datalist is already there is reused.

    Returns:
        ``{domain: {"datalist": path, "base_dir": folder}}``.
    """
    from monai_ext.data.volume import VolumeSlicer

    prepared = {}
    slicer = VolumeSlicer(axis=2, overwrite=overwrite)
    for domain in _domain_dirs(data_root, domains):
        domain_dir = os.path.abspath(os.path.join(data_root, domain))
        domain_out = os.path.join(os.path.abspath(out_dir), domain)
        json_path = os.path.join(domain_out, "datalist.json")
        if not os.path.isfile(json_path):
            source = os.path.join(domain_dir, "datalist.json")
            if os.path.isfile(source):
                groups = {k: _load(source, k, domain_dir) for k in _list_keys(source)}
            else:
                groups = _find_pairs(domain_dir)
            sliced = {k: slicer.expand(v, os.path.join(domain_out, k)) for k, v in groups.items()}
            keep = ("image", "label", "name", "slice_index")
            records = {k: [{f: r[f] for f in keep if f in r} for r in v] for k, v in sliced.items()}
            _write_datalist(records, json_path, domain_out)
        prepared[domain] = {"datalist": json_path, "base_dir": domain_out}
    return prepared


def make_demo_data(
    task: str, root: str, n_per_domain: int | None = None, image_size: int | None = None, seed: int = 0
) -> dict[str, dict[str, str]]:
    """Synthetic demo data for ``task`` ("fundus" or "cardiac") in ``root`` unless already there; every domain ends up
    with ``root/<domain>/datalist.json`` (cardiac volumes are generated in ``root/volumes`` and sliced to 2D).

    Returns:
        ``{domain: {"datalist": path, "base_dir": folder}}`` for every demo domain.
    """
    from monai_ext.data.synthetic import make_cardiac_dataset, make_fundus_dataset

    root = os.path.abspath(root)
    domains = DEMO_DOMAINS.get(task)
    if domains is None:
        raise ValueError(f"task must be one of {list(DEMO_DOMAINS)}, got {task!r}.")
    if task == "fundus":
        if not all(os.path.isfile(os.path.join(root, d, "datalist.json")) for d in domains):
            make_fundus_dataset(root, n_per_domain=n_per_domain or 24, image_size=image_size or 128, seed=seed)
        return prepare_fundus_domains(root, root, domains)
    volumes = os.path.join(root, "volumes")
    if not all(os.path.isfile(os.path.join(volumes, d, "datalist.json")) for d in domains):
        make_cardiac_dataset(volumes, n_per_domain=n_per_domain or 8, image_size=image_size or 96, slices=4, seed=seed)
    return prepare_cardiac_domains(volumes, root, domains)


# ------------------------------------------------------------------------------------------------------ metrics
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
            self.add(name, _as_index_map(item["pred"]), _as_index_map(item["label"]), spacing=item_spacing(item))

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


# --------------------------------------------------------------------------------------------------------- tables
def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _result_rows(results: Mapping[str, Mapping[str, Mapping[str, Any]]], regions: Sequence[str]) -> list[dict]:
    """Flat rows: one per (variant, target domain) and one ``mean`` row per variant (mean over target domains)."""
    rows = []
    for variant, per_domain in results.items():
        domain_rows = []
        for domain, report in per_domain.items():
            row = {"variant": variant, "target_domain": domain, "num_images": report["num_images"]}
            for region in regions:
                metrics = report["regions"][region]["per_image_mean"]
                row[f"{region} Dice"] = None if metrics["dice"] is None else 100.0 * metrics["dice"]
                row[f"{region} HD95"] = metrics["hd95"]
            mean = report["mean_over_regions"]["per_image_mean"]
            row["mean Dice"] = None if mean["dice"] is None else 100.0 * mean["dice"]
            row["mean HD95"] = mean["hd95"]
            domain_rows.append(row)
        rows += domain_rows
        mean_row = {"variant": variant, "target_domain": "mean", "num_images": sum(r["num_images"] for r in domain_rows)}
        for key in domain_rows[0]:
            if key.endswith("Dice") or key.endswith("HD95"):
                values = [r[key] for r in domain_rows if r[key] is not None]
                mean_row[key] = float(np.mean(values)) if values else None
        rows.append(mean_row)
    return rows


def format_dg_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of :func:`_result_rows`: Dice in %, HD95 in pixels."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for row in rows:
        cells = []
        for c in columns:
            value = row[c]
            cells.append(_fmt(value) if isinstance(value, float) or value is None else str(value))
            if row["target_domain"] == "mean" and c not in ("variant", "num_images"):
                cells[-1] = f"**{cells[-1]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _rows_to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------- DG workflow
def _run_workflow(config_files: Sequence[str], workflow_type: str, overrides: Mapping[str, Any]) -> None:
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(config_file=list(config_files), workflow_type=workflow_type, **dict(overrides))
    workflow.initialize()
    try:
        workflow.run()
    finally:
        workflow.finalize()


def _run_subprocess(bundle_dir: str, config_files: Sequence[str], overrides: Mapping[str, Any]) -> None:
    from monai_ext.engines.bundle_runner import run_bundle

    run_bundle(bundle_dir, [os.path.basename(f) for f in config_files], overrides)


def run_domain_generalization(
    bundle_dir: str,
    domains: Mapping[str, Mapping[str, str]],
    source: str,
    output_dir: str,
    targets: Sequence[str] | None = None,
    variants: Sequence[str] = ("full",),
    configs: Sequence[str] = ("train.json",),
    overrides: Mapping[str, Any] | None = None,
    target_key: str = "all",
    regions: Mapping[str, Sequence[int]] | None = None,
    subprocess: bool = False,
    task_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train every variant on ``source`` and evaluate it on each target domain with the bundle's configs.

    Args:
        bundle_dir: the VLSA-Net bundle folder.
        domains: ``{domain: {"datalist", "base_dir"}}`` (see :func:`prepare_fundus_domains`).
        source: the training domain; its datalist's training list is split into training and validation.
        output_dir: ``<variant>/models``, ``<variant>/runs``, ``<variant>/eval/<target>/report.json`` and the tables
            ``dg_results.md``, ``dg_results.csv``, ``dg_results.json``.
        targets: unseen domains to test on (default: every other domain).
        variants: names from :data:`VARIANTS`, each trained with the same budget.
        configs: bundle config files (names in ``bundle_dir/configs``) before ``evaluate.json``.
        overrides: config overrides for every run (epochs, image size, ...).
        target_key: datalist key of the target images to test on (``"all"``: the whole domain).
        regions: evaluated regions (default: the bundle's ``eval_regions``).
        subprocess: run each step as ``python -m monai.bundle run`` in a subprocess instead of in-process.
        task_info: extra entries for ``dg_results.json`` (the command line, data description).

    Returns:
        ``{"rows": [...], "markdown": str, "paths": {...}}``.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"Unknown variant(s) {unknown or variants}; choose from {list(VARIANTS)}.")
    if source not in domains:
        raise ValueError(f"Source domain {source!r} not among the prepared domains {list(domains)}.")
    targets = [d for d in domains if d != source] if targets is None else list(targets)
    bad = [t for t in targets if t not in domains or t == source]
    if bad or not targets:
        raise ValueError(f"Target domains {bad or targets} must be prepared domains other than the source {source!r}.")
    output_dir = os.path.abspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    config_dir = os.path.join(os.path.abspath(bundle_dir), "configs")
    train_files = [os.path.join(config_dir, c) for c in configs]
    eval_files = train_files + [os.path.join(config_dir, "evaluate.json")]
    common = {"bundle_root": os.path.abspath(bundle_dir), **dict(overrides or {})}
    if regions is not None:
        common["eval_regions"] = {k: list(v) for k, v in regions.items()}
    started = time.time()
    results: dict[str, dict[str, Any]] = {}
    steps_total, step = len(variants) * (1 + len(targets)), 0

    def progress(message: str) -> None:
        elapsed = time.time() - started
        print(f"[DG {step}/{steps_total} | {elapsed / 60:.1f} min] {message}", flush=True)

    for variant in variants:
        variant_dir = os.path.join(output_dir, variant)
        run_overrides = {
            **common,
            **VARIANTS[variant],
            "ckpt_dir": os.path.join(variant_dir, "models"),
            "log_dir": os.path.join(variant_dir, "runs"),
        }
        step += 1
        progress(f"variant '{variant}' {VARIANTS[variant] or '(all parts on)'}: training on source domain '{source}'")
        train_overrides = {
            **run_overrides,
            "datalist_file": domains[source]["datalist"],
            "data_base_dir": domains[source]["base_dir"],
            "output_dir": os.path.join(variant_dir, "eval", source),
        }
        if subprocess:
            _run_subprocess(bundle_dir, train_files, train_overrides)
        else:
            _run_workflow(train_files, "train", train_overrides)
        results[variant] = {}
        for target in targets:
            step += 1
            progress(f"variant '{variant}': evaluating on unseen domain '{target}'")
            eval_dir = os.path.join(variant_dir, "eval", target)
            eval_overrides = {
                **run_overrides,
                "datalist_file": domains[target]["datalist"],
                "data_base_dir": domains[target]["base_dir"],
                "test_key": target_key,
                "output_dir": eval_dir,
            }
            if subprocess:
                _run_subprocess(bundle_dir, eval_files, eval_overrides)
            else:
                _run_workflow(eval_files, "eval", eval_overrides)
            with open(os.path.join(eval_dir, "report.json"), encoding="utf-8") as f:
                results[variant][target] = json.load(f)
            mean = results[variant][target]["mean_over_regions"]["per_image_mean"]
            progress(f"variant '{variant}' on '{target}': mean Dice {_fmt(100 * (mean['dice'] or float('nan')))}%, "
                     f"mean HD95 {_fmt(mean['hd95'])}")

    first_report = next(iter(next(iter(results.values())).values()))
    region_names = first_report.get("region_names") or list(first_report["regions"])
    rows = _result_rows(results, region_names)
    table = format_dg_table(rows)
    minutes = (time.time() - started) / 60
    header = (
        f"# Single-source domain generalisation: trained on '{source}', tested on {', '.join(targets)}\n\n"
        f"Dice: per-image mean over the target domain's images (%); HD95: per-image mean in the images' own units, "
        f"millimetres for NIfTI/DICOM, pixels of the original image for PNG/JPEG (images where prediction or label is "
        f"empty are left out of HD95). `mean` rows average the target domains. Total time {minutes:.1f} min.\n\n"
    )
    paths = {
        "markdown": os.path.join(output_dir, "dg_results.md"),
        "csv": os.path.join(output_dir, "dg_results.csv"),
        "json": os.path.join(output_dir, "dg_results.json"),
    }
    atomic_write_text(paths["markdown"], header + table, overwrite=True)
    atomic_write_text(paths["csv"], _rows_to_csv(rows), overwrite=True)
    atomic_write_json(
        paths["json"],
        {
            "source": source,
            "targets": targets,
            "variants": {v: VARIANTS[v] for v in variants},
            "target_key": target_key,
            "overrides": {k: v for k, v in common.items() if k != "bundle_root"},
            "configs": list(configs),
            "minutes": minutes,
            "rows": rows,
            "reports": results,
            **dict(task_info or {}),
        },
        overwrite=True,
    )
    print(header + table, flush=True)
    return {"rows": rows, "markdown": table, "paths": paths}

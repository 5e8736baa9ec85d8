"""Single-source domain generalisation (DG) for the VLSA-Net bundle: train on one domain, evaluate on unseen ones.

:func:`run_domain_generalization` (used by ``scripts/evaluate_dg.py``) trains each variant (full / no_em / no_text /
no_alignment / no_em_no_text) with the bundle's own configs through :class:`monai.bundle.ConfigWorkflow`, evaluates
every target domain with ``evaluate.json`` and writes ``dg_results.md``/``dg_results.csv``/``dg_results.json``
atomically. The data it takes (one decathlon-style datalist per domain) comes from
:func:`monai_ext.data.prepare_fundus_domains`, :func:`monai_ext.data.prepare_cardiac_domains` or
:func:`monai_ext.demo.make_demo_data`; each evaluation's ``report.json`` is written by
:class:`monai_ext.handlers.SegmentationReportWriter` for the config's ``eval_regions`` (a region being a set of label
values: fundus optic disc = labels {1, 2}, optic cup = {2}); with ``eval_per_volume`` (cardiac) also
``volumes/report.json`` by :class:`monai_ext.handlers.VolumeReportWriter` (the slices stacked back into volumes), which
the tables then report, with the per-slice means beside them. Before any training, the configs' label map
(``label_orig_values`` -> ``label_target_values``) is checked against the label files of every domain used
(:func:`monai_ext.data.check_domain_labels`): a map that contradicts them stops the experiment."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from monai_ext.bundle.parser import bundle_parser
from monai_ext.bundle.runner import run_bundle
from monai_ext.data.domains import check_domain_labels
from monai_ext.data.label_maps import LABEL_CLASSES, LABEL_MAPS, label_map_from_values, label_map_name
from monai_ext.io import atomic_write_json, atomic_write_text

__all__ = [
    "VARIANTS",
    "LABEL_MAPS",
    "check_label_map_of_configs",
    "evaluates_per_volume",
    "evaluation_regions",
    "format_dg_table",
    "run_domain_generalization",
]


# Ablation variants: config overrides of bundles/vlsanet/configs/train.json.
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_em": {"use_em": False},
    "no_text": {"use_text": False},
    "no_alignment": {"alignment_weight": 0.0},
    "no_em_no_text": {"use_em": False, "use_text": False},
}


# LABEL_MAPS (label value in the files -> label used by the bundle, its label_orig_values / label_target_values) is
# monai_ext.data.LABEL_MAPS: index, refuge, ccsdg, mscmrseg, slaug.


# --------------------------------------------------------------------------------------------------------- tables
def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _result_rows(
    results: Mapping[str, Mapping[str, Mapping[str, Any]]],
    regions: Sequence[str],
    unit: str = "image",
    count_column: str | None = None,
) -> list[dict]:
    """Flat rows: one per (variant, target domain) and one ``mean`` row per variant (mean over target domains), from
    the reports' per-``unit`` means (``"image"`` or ``"volume"``, :class:`monai_ext.metrics.SegmentationReport`);
    the count column is ``count_column`` (default ``num_<unit>s``)."""
    count_column = count_column or f"num_{unit}s"
    rows = []
    for variant, per_domain in results.items():
        domain_rows = []
        for domain, report in per_domain.items():
            row = {"variant": variant, "target_domain": domain, count_column: report[f"num_{unit}s"]}
            for column, key in {**{region: region for region in regions}, "mean": "mean_over_regions"}.items():
                metrics = report[f"per_{unit}_mean"][key]
                row[f"{column} Dice"] = None if metrics["dice"] is None else 100.0 * metrics["dice"]
                row[f"{column} HD95"] = metrics["hd95"]
            domain_rows.append(row)
        rows += domain_rows
        mean_row = {
            "variant": variant,
            "target_domain": "mean",
            count_column: sum(r[count_column] for r in domain_rows),
        }
        for key in domain_rows[0]:
            if key.endswith("Dice") or key.endswith("HD95"):
                values = [r[key] for r in domain_rows if r[key] is not None]
                mean_row[key] = float(np.mean(values)) if values else None
        rows.append(mean_row)
    return rows


def format_dg_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of :func:`_result_rows`: Dice in %, HD95 in the images' units (``mean`` rows in bold)."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for row in rows:
        cells = []
        for c in columns:
            value = row[c]
            cells.append(_fmt(value) if isinstance(value, float) or value is None else str(value))
            if row["target_domain"] == "mean" and c != "variant" and not c.startswith("num_"):
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
    run_bundle(bundle_dir, [os.path.basename(f) for f in config_files], overrides)


def evaluation_regions(
    bundle_dir: str, configs: Sequence[str], overrides: Mapping[str, Any] | None = None
) -> dict[str, list[int]]:
    """The ``eval_regions`` (``{name: label values}``) that the evaluation with ``configs`` + ``evaluate.json`` (names
    in ``bundle_dir/configs``) and ``overrides`` reports, e.g. ``{"LV": [1], "MYO": [2], "RV": [3]}`` with
    ``cardiac.json``."""
    parser = bundle_parser(bundle_dir, [*configs[1:], "evaluate.json"], overrides, base_config=configs[0])
    if "eval_regions" not in parser:
        raise KeyError(f"The bundle configs {list(configs)} define no 'eval_regions' to report.")
    return {str(name): [int(v) for v in values] for name, values in parser.get_parsed_content("eval_regions").items()}


def evaluates_per_volume(bundle_dir: str, configs: Sequence[str], overrides: Mapping[str, Any] | None = None) -> bool:
    """Whether the evaluation with ``configs`` + ``evaluate.json`` and ``overrides`` also reports per volume
    (``eval_per_volume``: the slices of each volume stacked back, ``<output_dir>/volumes/report.json``; on with
    ``cardiac.json``)."""
    parser = bundle_parser(bundle_dir, [*configs[1:], "evaluate.json"], overrides, base_config=configs[0])
    return "eval_per_volume" in parser and parser.get_parsed_content("eval_per_volume") is True


def check_label_map_of_configs(
    bundle_dir: str,
    configs: Sequence[str],
    domains: Mapping[str, Mapping[str, str]],
    overrides: Mapping[str, Any] | None = None,
    map_name: str | None = None,
) -> dict[str, dict[str, Any]] | None:
    """Check the label map the training with ``configs`` (names in ``bundle_dir/configs``) and ``overrides`` applies
    (``label_orig_values`` -> ``label_target_values``, for the config's ``task``) against each of ``domains``.

    Returns:
        ``{domain: summary}`` (:func:`monai_ext.data.check_label_map`), or ``None`` when the configs name no task with
        known label classes (:data:`monai_ext.data.LABEL_CLASSES`).

    Raises:
        LabelMapError: the map contradicts a domain's label files.
    """
    parser = bundle_parser(bundle_dir, list(configs[1:]), overrides, base_config=configs[0])
    task = parser.get_parsed_content("task") if "task" in parser else None
    if task not in LABEL_CLASSES:
        return None
    label_map = label_map_from_values(
        parser.get_parsed_content("label_orig_values"), parser.get_parsed_content("label_target_values")
    )
    return check_domain_labels(domains, label_map, task, map_name=map_name or label_map_name(label_map, task))


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
    check_label_map: bool = True,
) -> dict[str, Any]:
    """Train every variant on ``source`` and evaluate it on each target domain with the bundle's configs.

    Args:
        bundle_dir: the VLSA-Net bundle folder.
        domains: ``{domain: {"datalist", "base_dir"}}`` (see :func:`monai_ext.data.prepare_fundus_domains`).
        source: the training domain; its datalist's training list is split into training and validation.
        output_dir: ``<variant>/models``, ``<variant>/runs``, ``<variant>/eval/<target>/report.json`` and the tables
            ``dg_results.md``, ``dg_results.csv``, ``dg_results.json``.
        targets: unseen domains to test on (default: every other domain).
        variants: names from :data:`VARIANTS`, each trained with the same budget.
        configs: bundle config files (names in ``bundle_dir/configs``) before ``evaluate.json``.
        overrides: config overrides for every run (epochs, image size, ...).
        target_key: datalist key of the target images to test on (``"all"``: the whole domain). With per-volume
            evaluation (``eval_per_volume``, cardiac) the key must list whole volumes (every slice of each).
        regions: evaluated regions (default: the bundle's ``eval_regions``).
        subprocess: run each step as ``python -m monai.bundle run`` in a subprocess instead of in-process.
        task_info: extra entries for ``dg_results.json`` (the command line, data description).
        check_label_map: before any training, check the configs' label map against the label files of the source
            and target domains (:func:`check_label_map_of_configs`); ``False`` skips the check.

    With per-volume evaluation (:func:`evaluates_per_volume`), the tables report each target volume's 3D Dice and
    HD95 averaged over volumes (``rows``, ``dg_results.md``/``.csv``) and, labelled as such, the per-slice means
    (``rows_per_slice``, a second table in ``dg_results.md``, ``dg_results_per_slice.csv``).

    Returns:
        ``{"rows": [...], "aggregation": "per volume" or "per image", "markdown": str, "paths": {...}}``, with
        per-volume evaluation also ``"rows_per_slice"`` and ``"volume_reports"``.

    Raises:
        LabelMapError: (with ``check_label_map``) the label map contradicts a domain's label files; nothing has been
            trained.
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
    # The regions the evaluations will report, read before any training so that a config without them fails early.
    eval_regions = evaluation_regions(bundle_dir, configs, common)
    per_volume = evaluates_per_volume(bundle_dir, configs, common)
    if check_label_map:
        used = {d: domains[d] for d in [source, *targets]}
        checked = check_label_map_of_configs(bundle_dir, configs, used, common)
        if checked is not None:
            for domain, summary in checked.items():
                nesting = "; ".join(
                    (
                        f"{pair}: {100 * n['open_fraction']:.0f}% of its border open"
                        if n["slices"]
                        else f"{pair}: untested"
                    )
                    for pair, n in summary["nesting"].items()
                )
                print(
                    f"[DG] label map checked on '{domain}' ({len(summary['files'])} label files): value -> class "
                    f"{summary['map']}, background most frequent; {nesting}",
                    flush=True,
                )
    started = time.time()
    results: dict[str, dict[str, Any]] = {}
    volume_results: dict[str, dict[str, Any]] = {}
    steps_total, step = len(variants) * (1 + len(targets)), 0

    def progress(message: str) -> None:
        elapsed = time.time() - started
        print(f"[DG {step}/{steps_total} | {elapsed / 60:.1f} min] {message}", flush=True)

    for variant in variants:
        variant_dir = os.path.join(output_dir, variant)
        run_overrides = {
            **common,
            **VARIANTS[variant],
            # The experiment checked the label map of every domain above (or was told not to): the runs do not again.
            "check_label_map": False,
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
        results[variant], volume_results[variant] = {}, {}
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
            results[variant][target] = _read_report(os.path.join(eval_dir, "report.json"))
            mean = results[variant][target]["per_image_mean"]["mean_over_regions"]
            if per_volume:
                volume_results[variant][target] = _read_report(os.path.join(eval_dir, "volumes", "report.json"))
                mean = volume_results[variant][target]["per_volume_mean"]["mean_over_regions"]
            progress(
                f"variant '{variant}' on '{target}': mean Dice {_fmt(100 * (mean['dice'] or float('nan')))}%, "
                f"mean HD95 {_fmt(mean['hd95'])} ({'per volume' if per_volume else 'per image'})"
            )

    minutes = (time.time() - started) / 60
    title = f"# Single-source domain generalisation: trained on '{source}', tested on {', '.join(targets)}\n\n"
    paths = {
        "markdown": os.path.join(output_dir, "dg_results.md"),
        "csv": os.path.join(output_dir, "dg_results.csv"),
        "json": os.path.join(output_dir, "dg_results.json"),
    }
    extra: dict[str, Any] = {}
    if per_volume:
        rows = _result_rows(volume_results, list(eval_regions), unit="volume")
        slice_rows = _result_rows(results, list(eval_regions), count_column="num_slices")
        table = format_dg_table(rows)
        text = (
            title + "## Per volume\n\nDice (%) and HD95 per 3D volume: each volume's slice predictions stacked back "
            "in slice order, Dice and HD95 (mm, the voxel size at the network's input size) computed on the volume, "
            "then averaged over the target domain's volumes (the convention of SLAug's test.py); background is not "
            f"evaluated. `mean` rows average the target domains. Total time {minutes:.1f} min.\n\n{table}\n"
            "## Per slice\n\nThe same predictions with every 2D slice counted as an image (per-slice means; not "
            "comparable with per-volume numbers or the published cardiac tables). Also in dg_results_per_slice.csv."
            f"\n\n{format_dg_table(slice_rows)}"
        )
        paths["csv_per_slice"] = os.path.join(output_dir, "dg_results_per_slice.csv")
        atomic_write_text(paths["csv_per_slice"], _rows_to_csv(slice_rows), overwrite=True)
        extra = {"rows_per_slice": slice_rows, "volume_reports": volume_results}
    else:
        rows = _result_rows(results, list(eval_regions))
        table = format_dg_table(rows)
        text = title + (
            "Dice: per-image mean over the target domain's images (%); HD95: per-image mean in the images' own units, "
            "millimetres for NIfTI/DICOM, pixels of the original image for PNG/JPEG (images where prediction or label "
            f"is empty are left out of HD95). `mean` rows average the target domains. Total time {minutes:.1f} min."
            f"\n\n{table}"
        )
    aggregation = "per volume" if per_volume else "per image"
    atomic_write_text(paths["markdown"], text, overwrite=True)
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
            "regions": eval_regions,
            "aggregation": aggregation,
            "minutes": minutes,
            "rows": rows,
            "reports": results,
            **extra,
            **dict(task_info or {}),
        },
        overwrite=True,
    )
    print(text, flush=True)
    return {"rows": rows, "aggregation": aggregation, "markdown": table, "paths": paths, **extra}


def _read_report(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)

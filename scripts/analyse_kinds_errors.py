"""Where a model of the kinds demo task loses Dice: its errors split by the lesions the report does and does not name.

Reads runs of ``scripts/benchmark_accuracy.py --task kinds`` (``<runs_dir>/<variant>_seed<k>/``: ``result.json`` and
``models/model.pt``), builds each variant's network and evaluation pipeline as the benchmark evaluates it (the bundle's
``train.json`` + ``demo.json`` + the variant's configs + ``evaluate.json``, the run's overrides, the variant's own
overrides from ``VARIANTS`` of ``scripts/benchmark_accuracy.py``), predicts every image of the evaluated splits and
splits each prediction's errors with the generator's per-lesion maps (``kind_map`` and ``zone_map``, one mask per
``(kind, zone)`` by ``monai_ext.demo.mask_for_findings``). Error classes per image (threshold 0.5, band ``b`` = 2 px):

* FP *unnamed*: predicted pixels on, or within ``b`` px of, a lesion the report does not name (and not within ``b`` px
  of a named one); FP *boundary*: within ``b`` px of a named lesion; FP *background*: the rest;
* FN *missed*: the missed pixels of a named lesion found < 50 %, or the interior (more than ``b`` px inside) pixels of
  a found one; FN *boundary*: the missed pixels in the ``b``-px rim of a found named lesion;
* "corrected Dice": the per-image mean Dice with exactly one class removed from the prediction (FP) or added (FN);
* painted unnamed lesions (>= 20 % predicted) by *kind confusion* (a lesion of another kind is named in its zone),
  *location confusion* (its kind is named in other zones only), *both*, *neither*;
* a post-processing check: thresholds and dropping small connected components.

Writes ``errors.md`` (the tables) and ``errors.json`` (the same numbers, plus per-image and per-lesion records) to
``output_dir``::

    OMP_NUM_THREADS=1 python scripts/analyse_kinds_errors.py --runs_dir benchmark_results/accuracy_kinds/runs \
        --variants "[tgcnet,oracle]" --seeds "[0,1,2]" --output_dir benchmark_results/analysis_kinds_errors

The data folder is the benchmark's (``<runs_dir>/../data``) unless ``--data_dir`` is given. The computation over
prediction and lesion maps (:func:`analyse_image`, :func:`summarise`) is plain numpy, apart from HD95.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence

import fire
import numpy as np
from PIL import Image
from scipy import ndimage

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from monai_ext.demo import LESION_KINDS, mask_for_findings  # noqa: E402
from monai_ext.flags import checked_flags  # noqa: E402
from monai_ext.io import atomic_write_json, atomic_write_text  # noqa: E402


@functools.cache
def _benchmark_accuracy():
    """``scripts/benchmark_accuracy.py`` as a module (scripts are files, not a package): its variant table and bundle;
    loaded on first use, not at import."""
    spec = importlib.util.spec_from_file_location(
        "benchmark_accuracy", os.path.join(REPO_ROOT, "scripts", "benchmark_accuracy.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BAND = 2  # px: FP this close to a named lesion, FN this close to its border are boundary errors
FOUND = 0.5  # a named lesion with this recall is found: its missed rim is a boundary error, not a miss
PAINTED = 0.2  # an unnamed lesion with this fraction predicted is painted
THRESHOLD = 0.5  # as benchmarked (the bundle's AsDiscreted)
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
MIN_SIZES = (10, 20, 40)  # px: predicted components smaller than this dropped
CONFUSIONS = ("kind", "location", "both", "neither")
FP_CLASSES = ("fp_unnamed", "fp_background", "fp_boundary")
FN_CLASSES = ("fn_missed", "fn_boundary")
# evaluation -> (LViT split, datalist key, dataset folder or None: the variant's own, as benchmark_accuracy tests it)
EVALUATIONS = {
    "test": ("Test", "test", None),
    "validation": ("Val", "validation", None),
    "counterfactual": ("Test", "test", "counterfactual"),
    "counterfactual_frames": ("Test", "test", "counterfactual_frames"),
    "counterfactual_terms": ("Test", "test", "counterfactual_terms"),
}


# --------------------------------------------------------------------------------------------- pure computation
def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice of two boolean masks; 1 when both are empty (the benchmark's convention)."""
    total = int(pred.sum()) + int(gt.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & gt).sum()) / total


def hd95(pred: np.ndarray, gt: np.ndarray) -> float:
    """HD95 in px as the benchmark reports it (``SegmentationReport``); NaN when exactly one mask is empty."""
    from monai_ext.metrics import SegmentationReport

    return SegmentationReport().add("image", pred.astype(np.uint8), gt.astype(np.uint8))["foreground"]["hd95"]


def lesion_masks(kind_map: np.ndarray, zone_map: np.ndarray, item: Mapping) -> list[dict]:
    """``[{"kind", "zone", "named", "mask"}]``, one per lesion of a datalist item (``findings_present``), named when
    the report names it (``findings_named``)."""
    named = {(f["kind"], f["zone"]) for f in item["findings_named"]}
    present = {(f["kind"], f["zone"]) for f in item["findings_present"]}
    if not named <= present:
        raise ValueError(f"{item.get('name')}: named findings {sorted(named - present)} are not among those present.")
    return [
        {
            "kind": f["kind"],
            "zone": f["zone"],
            "named": (f["kind"], f["zone"]) in named,
            "mask": mask_for_findings(kind_map, zone_map, [f]),
        }
        for f in item["findings_present"]
    ]


def confusion_class(kind: str, zone: str, named: Sequence[tuple[str, str]]) -> str:
    """How an unnamed lesion relates to the named ``(kind, zone)`` findings (one of :data:`CONFUSIONS`):
    ``kind``: another kind is named in its zone (only the kind tells them apart); ``location``: its kind is named,
    in other zones only; ``both``: its zone and (elsewhere) its kind are named; ``neither``."""
    same_zone = any(z == zone for _, z in named)
    same_kind = any(k == kind for k, _ in named)
    return "both" if same_zone and same_kind else "kind" if same_zone else "location" if same_kind else "neither"


def remove_small_components(pred: np.ndarray, min_size: int) -> np.ndarray:
    """``pred`` without its connected components (4-connected) of fewer than ``min_size`` pixels."""
    labels, count = ndimage.label(pred)
    if count == 0:
        return pred.copy()
    sizes = ndimage.sum(pred, labels, range(1, count + 1))
    keep = np.concatenate([[False], sizes >= min_size])
    return keep[labels]


def error_masks(pred: np.ndarray, lesions: Sequence[Mapping], band: int = BAND) -> dict[str, np.ndarray]:
    """The error classes of one prediction as boolean masks (see the module docstring): :data:`FP_CLASSES`,
    :data:`FN_CLASSES`, plus ``gt`` (the named lesions), ``unnamed`` (the unnamed ones) and ``near_named`` (``gt``
    dilated by ``band``)."""
    pred = np.asarray(pred, bool)
    gt, unnamed = np.zeros_like(pred), np.zeros_like(pred)
    for lesion in lesions:
        if lesion["named"]:
            gt |= lesion["mask"]
        else:
            unnamed |= lesion["mask"]
    near_named = ndimage.binary_dilation(gt, iterations=band)
    near_unnamed = ndimage.binary_dilation(unnamed, iterations=band)
    fp = pred & ~gt
    masks = {
        "gt": gt,
        "unnamed": unnamed,
        "near_named": near_named,
        "fp_unnamed": fp & near_unnamed & ~near_named,
        "fp_boundary": fp & near_named,
        "fp_background": fp & ~near_named & ~near_unnamed,
        "fn_missed": np.zeros_like(pred),
        "fn_boundary": np.zeros_like(pred),
    }
    for lesion in lesions:
        if not lesion["named"]:
            continue
        mask = lesion["mask"]
        miss = mask & ~pred
        if (pred & mask).sum() >= FOUND * mask.sum():
            inner = ndimage.binary_erosion(mask, iterations=band)
            masks["fn_boundary"] |= miss & ~inner
            masks["fn_missed"] |= miss & inner
        else:
            masks["fn_missed"] |= miss
    return masks


def analyse_image(
    prob: np.ndarray,
    lesions: Sequence[Mapping],
    threshold: float = THRESHOLD,
    band: int = BAND,
    thresholds: Sequence[float] = THRESHOLDS,
    min_sizes: Sequence[int] = MIN_SIZES,
    with_hd95: bool = True,
) -> dict:
    """The error record of one image (JSON-ready): pixel counts of each error class, the Dice as is and with each
    class corrected, one record per lesion, and the post-processing sweep.

    Args:
        prob: foreground probability (or a boolean prediction), the orientation of the lesion masks.
        lesions: :func:`lesion_masks` of the image.
    """
    prob = np.asarray(prob, float)
    pred = prob >= threshold
    masks = error_masks(pred, lesions, band)
    gt, near_named = masks["gt"], masks["near_named"]
    fp = pred & ~gt
    named = [(lesion["kind"], lesion["zone"]) for lesion in lesions if lesion["named"]]
    record = {
        "gt": int(gt.sum()),
        "pred": int(pred.sum()),
        "tp": int((pred & gt).sum()),
        "fp": int(fp.sum()),
        "fn": int((gt & ~pred).sum()),
        **{name: int(masks[name].sum()) for name in (*FP_CLASSES, *FN_CLASSES)},
        "dice": dice(pred, gt),
    }
    # FP near each unnamed lesion (on it or within the band, away from named ones), by kind and by confusion class
    by_kind = {kind: np.zeros_like(pred) for kind in LESION_KINDS}
    by_confusion = {name: np.zeros_like(pred) for name in CONFUSIONS}
    record["lesions"] = []
    for lesion in lesions:
        mask = lesion["mask"]
        size, hit = int(mask.sum()), int((pred & mask).sum())
        entry = {"kind": lesion["kind"], "zone": lesion["zone"], "named": lesion["named"], "size": size, "hit": hit}
        entry["recall"] = hit / size if size else 0.0
        if lesion["named"]:
            entry["fn"] = size - hit
            entry["found"] = hit >= FOUND * size
        else:
            region = fp & ndimage.binary_dilation(mask, iterations=band) & ~near_named
            entry["fp"] = int(region.sum())
            entry["painted"] = entry["recall"] >= PAINTED
            entry["confusion"] = confusion_class(lesion["kind"], lesion["zone"], named)
            by_kind[lesion["kind"]] |= region
            by_confusion[entry["confusion"]] |= region
        record["lesions"].append(entry)
    corrected = {
        "no_fp_unnamed": pred & ~masks["fp_unnamed"],
        "no_fp_background": pred & ~masks["fp_background"],
        "no_fp_boundary": pred & ~masks["fp_boundary"],
        "add_fn_missed": pred | masks["fn_missed"],
        "add_fn_boundary": pred | masks["fn_boundary"],
        "fix_boundary": (pred & ~masks["fp_boundary"]) | masks["fn_boundary"],
        "no_fp_unnamed_add_fn_missed": (pred & ~masks["fp_unnamed"]) | masks["fn_missed"],
        **{f"no_fp_unnamed_{kind}": pred & ~region for kind, region in by_kind.items()},
        **{f"no_fp_{name}_confusion": pred & ~region for name, region in by_confusion.items()},
    }
    record["corrected_dice"] = {name: dice(mask, gt) for name, mask in corrected.items()}
    if with_hd95:
        record["hd95"] = {"as_is": hd95(pred, gt), "no_fp_unnamed": hd95(corrected["no_fp_unnamed"], gt)}
    record["threshold_dice"] = {str(t): dice(prob >= t, gt) for t in thresholds}
    record["min_size_dice"] = {str(s): dice(remove_small_components(pred, s), gt) for s in min_sizes}
    return record


def _mean(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None and not np.isnan(v)]
    return statistics.fmean(values) if values else None


def summarise(records: Sequence[Mapping]) -> dict:
    """Sums and per-image means over the :func:`analyse_image` records of one model on one split."""
    base = _mean([r["dice"] for r in records])
    summary = {
        "images": len(records),
        "dice": base,
        "budget": {k: sum(r[k] for r in records) for k in ("gt", "pred", "tp", "fp", "fn", *FP_CLASSES, *FN_CLASSES)},
        "corrected_dice": {k: _mean([r["corrected_dice"][k] for r in records]) for k in records[0]["corrected_dice"]},
        "threshold_dice": {k: _mean([r["threshold_dice"][k] for r in records]) for k in records[0]["threshold_dice"]},
        "min_size_dice": {k: _mean([r["min_size_dice"][k] for r in records]) for k in records[0]["min_size_dice"]},
    }
    if "hd95" in records[0]:
        summary["hd95"] = {k: _mean([r["hd95"][k] for r in records]) for k in records[0]["hd95"]}
    lesions = [lesion for r in records for lesion in r["lesions"]]
    per_kind = {}
    for kind in LESION_KINDS:
        named = [x for x in lesions if x["kind"] == kind and x["named"]]
        unnamed = [x for x in lesions if x["kind"] == kind and not x["named"]]
        per_kind[kind] = {
            "named": len(named),
            "named_mean_recall": _mean([x["recall"] for x in named]),
            "named_not_found": sum(not x["found"] for x in named),
            "named_fn": sum(x["fn"] for x in named),
            "unnamed": len(unnamed),
            "unnamed_painted": sum(x["painted"] for x in unnamed),
            "unnamed_mean_fraction": _mean([x["recall"] for x in unnamed]),
            "unnamed_fp": sum(x["fp"] for x in unnamed),
            "gain_no_fp_unnamed": summary["corrected_dice"][f"no_fp_unnamed_{kind}"] - base,
        }
    summary["per_kind"] = per_kind
    painted = [x for x in lesions if not x["named"] and x["painted"]]
    summary["confusion"] = {
        name: {
            "painted": sum(x["confusion"] == name for x in painted),
            "by_kind": {
                kind: sum(x["confusion"] == name and x["kind"] == kind for x in painted) for kind in LESION_KINDS
            },
            "gain": summary["corrected_dice"][f"no_fp_{name}_confusion"] - base,
        }
        for name in CONFUSIONS
    }
    summary["unnamed"] = {
        "lesions": sum(not x["named"] for x in lesions),
        "painted": len(painted),
        "images_with_unnamed": sum(any(not x["named"] for x in r["lesions"]) for r in records),
        "images_with_painted": sum(any(not x["named"] and x["painted"] for x in r["lesions"]) for r in records),
    }
    return summary


# --------------------------------------------------------------------------------------------- markdown
def _f(value: float | None, digits: int = 3, sign: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _label(model: Mapping) -> str:
    return f"{model['variant']} s{model['seed']}"


def _markdown(results: Mapping) -> str:
    models = results["models"]
    s = results["settings"]
    main = s["evaluations"][0]
    lines = [
        "# Error decomposition on the kinds demo task",
        "",
        f"Runs `{s['runs_dir']}`, data `{s['data_dir']}`, {s['date']}. Threshold {THRESHOLD}, band {BAND} px; "
        f"a named lesion counts as found from {FOUND:.0%} recall, an unnamed one as painted from {PAINTED:.0%}.",
        "",
        f"Command: `{s['command']}`",
        "",
        "FP *unnamed*: predicted on, or within the band of, a lesion the report does not name (away from named ones); "
        "FP *boundary*: within the band of a named lesion; FP *background*: the rest. FN *missed*: pixels of a named "
        "lesion found below the recall above, or the interior of a found one; FN *boundary*: the missed rim of a found "
        "named lesion.",
        "",
    ]
    checks = [m for m in models if m[main].get("benchmark_max_abs_diff") is not None]
    if checks:
        worst = max(m[main]["benchmark_max_abs_diff"] for m in checks)
        lines += [
            f"Per-image Dice recomputed here vs the benchmark's `eval_{main}/per_image.csv`: max |difference| "
            f"{worst:.1e} over {len(checks)} run(s).",
            "",
        ]
    n = models[0][main]["summary"]["images"] if models else 0
    lines += [
        f"## 1. Pixel error budget, {main} split (sums over {n} images)",
        "",
        "| model | Dice | GT px | pred px | FP unnamed lesion | FP background | FP boundary | FN missed | FN boundary |",
        "| --- " * 9 + "|",
    ]
    for m in models:
        sm = m[main]["summary"]
        b = sm["budget"]
        lines.append(
            f"| {_label(m)} | {_f(sm['dice'])} | {b['gt']} | {b['pred']} | "
            + " | ".join(str(b[k]) for k in (*FP_CLASSES, *FN_CLASSES))
            + " |"
        )
    lines += [
        "",
        f"## 2. What fixing each class would buy (per-image mean Dice, {main}; HD95 px, mean over images)",
        "",
        "| model | as is | − FP unnamed | − FP background | + FN missed | − FP and + FN boundary | "
        "− FP unnamed and + FN missed | HD95 as is | HD95 − FP unnamed |",
        "| --- " * 9 + "|",
    ]

    def gains(sm: Mapping) -> dict:
        c, base = sm["corrected_dice"], sm["dice"]
        return {k: c[k] - base for k in ("no_fp_unnamed", "no_fp_background", "add_fn_missed", "fix_boundary")}

    for m in models:
        sm = m[main]["summary"]
        c, g, h = sm["corrected_dice"], gains(sm), sm.get("hd95", {})
        lines.append(
            f"| {_label(m)} | {_f(sm['dice'])} | {_f(c['no_fp_unnamed'])} ({_f(g['no_fp_unnamed'], sign=True)}) | "
            f"{_f(g['no_fp_background'], sign=True)} | {_f(g['add_fn_missed'], sign=True)} | "
            f"{_f(g['fix_boundary'], sign=True)} | {_f(c['no_fp_unnamed_add_fn_missed'])} | "
            f"{_f(h.get('as_is'), 1)} | {_f(h.get('no_fp_unnamed'), 1)} |"
        )
    variants = list(dict.fromkeys(m["variant"] for m in models))
    lines += [
        "",
        "Mean over seeds:",
        "",
        "| variant | seeds | as is | gain − FP unnamed | gain − FP background | gain + FN missed | gain boundary |",
        "| --- " * 7 + "|",
    ]
    for variant in variants:
        rows = [m[main]["summary"] for m in models if m["variant"] == variant]
        g = [gains(sm) for sm in rows]
        lines.append(
            f"| {variant} | {len(rows)} | {_f(_mean([sm['dice'] for sm in rows]))} | "
            + " | ".join(
                _f(_mean([x[k] for x in g]), sign=True)
                for k in ("no_fp_unnamed", "no_fp_background", "add_fn_missed", "fix_boundary")
            )
            + " |"
        )
    lines += [
        "",
        f"## 3. Per lesion kind ({main})",
        "",
        "| model | kind | named n | named mean recall | named < 50 % found | named FN px | unnamed n | "
        "unnamed painted (≥ 20 %) | mean fraction of unnamed painted | unnamed FP px | "
        "Dice gain if this kind's unnamed FP removed |",
        "| --- " * 11 + "|",
    ]
    for m in models:
        for kind, k in m[main]["summary"]["per_kind"].items():
            lines.append(
                f"| {_label(m)} | {kind} | {k['named']} | {_f(k['named_mean_recall'])} | {k['named_not_found']} | "
                f"{k['named_fn']} | {k['unnamed']} | {k['unnamed_painted']} | {_f(k['unnamed_mean_fraction'], 2)} | "
                f"{k['unnamed_fp']} | {_f(k['gain_no_fp_unnamed'], sign=True)} |"
            )
    lines += [
        "",
        f"## 4. Kind confusion vs location confusion (painted unnamed lesions, {main})",
        "",
        "*kind*: a lesion of another kind is named in the same zone (only the kind tells them apart); *location*: its "
        "own kind is named, but only in other zones; *both*; *neither*: neither its kind nor its zone is named. The "
        "Dice gains remove the FP around every unnamed lesion of that class (painted or not).",
        "",
        "| model | painted / unnamed | kind confusion | location confusion | both | neither | "
        "Dice gain: − kind / − location / − both / − neither |",
        "| --- " * 7 + "|",
    ]
    for m in models:
        sm = m[main]["summary"]
        conf = sm["confusion"]
        cells = [f"{conf[name]['painted']} ({conf[name]['by_kind']['nodule']} nodules)" for name in CONFUSIONS]
        lines.append(
            f"| {_label(m)} | {sm['unnamed']['painted']} / {sm['unnamed']['lesions']} | "
            + " | ".join(cells)
            + " | "
            + " / ".join(_f(conf[name]["gain"], sign=True) for name in CONFUSIONS)
            + " |"
        )
    thresholds = list(models[0][main]["summary"]["threshold_dice"]) if models else []
    sizes = list(models[0][main]["summary"]["min_size_dice"]) if models else []
    lines += [
        "",
        f"## 5. Would post-processing help? (per-image mean Dice, threshold {THRESHOLD} = as benchmarked)",
        "",
        "| model | split | "
        + " | ".join(f"thr {t}" for t in thresholds)
        + " | "
        + " | ".join(f"drop comps < {size} px" for size in sizes)
        + " |",
        "| --- " * (2 + len(thresholds) + len(sizes)) + "|",
    ]
    # the validation split first: that is where a threshold or a size rule may be chosen
    for evaluation in sorted(s["evaluations"], key=lambda e: e != "validation"):
        for m in models:
            sm = m[evaluation]["summary"]
            lines.append(
                f"| {_label(m)} | {evaluation} | "
                + " | ".join(_f(sm["threshold_dice"][t]) for t in thresholds)
                + " | "
                + " | ".join(_f(sm["min_size_dice"][size]) for size in sizes)
                + " |"
            )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- prediction
def _read_json(path: str, what: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} '{path}' not found.")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _read_png(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Lesion map '{path}' not found.")
    return np.asarray(Image.open(path))


def predict(run_dir: str, dataset_dir: str, split: str, device: str = "cpu") -> dict[str, tuple]:
    """``{name: (probability, label)}`` of every image of ``split`` in ``dataset_dir``, in the network's orientation,
    by the run's model built and fed as ``scripts/benchmark_accuracy.py`` evaluates it."""
    import torch
    from monai_ext.bundle.parser import bundle_parser, load_bundle_network
    from monai_ext.data import SelectOutput

    checkpoint = os.path.join(run_dir, "models", "model.pt")
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"Run '{run_dir}' has no trained model: '{checkpoint}' not found.")
    settings = _read_json(os.path.join(run_dir, "result.json"), "Run result")["settings"]
    variant = settings["variant"]
    configs, overrides, _ = _benchmark_accuracy().VARIANTS[variant]
    config_dir = os.path.join(_benchmark_accuracy().BUNDLE, "configs")
    parser = bundle_parser(
        _benchmark_accuracy().BUNDLE,
        [os.path.join(config_dir, name) for name in ["demo.json", *configs, "evaluate.json"]],
        {
            **settings["overrides"],
            **overrides,
            "seed": settings["seed"],
            "ckpt_dir": os.path.join(run_dir, "models"),
            "dataset_dir": dataset_dir,
            "test_split": split,
            "cache_rate": 0.0,
            "num_workers": 0,
            "device": f"$torch.device('{device}')",
            "amp": False,
        },
        base_config=os.path.join(config_dir, "train.json"),
    )
    network = load_bundle_network(parser, checkpoint, device=device, net_id="network_def")
    loader = parser.get_parsed_content("validate#dataloader")
    inferer = parser.get_parsed_content("validate#inferer")
    prepare_batch = parser.get_parsed_content("prepare_batch")
    select = SelectOutput()
    out = {}
    with torch.no_grad():
        for batch in loader:
            prepared = prepare_batch(batch, torch.device(device))  # as SupervisedEvaluator's iteration
            inputs, labels = prepared[:2]
            args, kwargs = (prepared[2], prepared[3]) if len(prepared) == 4 else ((), {})
            probs = torch.sigmoid(select(inferer(inputs, network, *args, **kwargs)).float())
            for name, prob, label in zip(batch["name"], probs, labels):
                out[name] = (prob[0].cpu().numpy(), label[0].cpu().numpy() > 0.5)
    return out


def _lesions_oriented(item: Mapping, data_dir: str, label: np.ndarray) -> tuple[list[dict], bool]:
    """The item's lesions and whether the network's arrays are the maps' transpose (MONAI's PIL reader), checked by
    the named lesions' union matching the label the network was scored against."""
    kind_map = _read_png(os.path.join(data_dir, item["kind_map"]))
    zone_map = _read_png(os.path.join(data_dir, item["zone_map"]))
    lesions = lesion_masks(kind_map, zone_map, item)
    gt = np.zeros(kind_map.shape, bool)
    for lesion in lesions:
        if lesion["named"]:
            gt |= lesion["mask"]
    for transpose in (False, True):
        candidate = label.T if transpose else label
        if candidate.shape == gt.shape and np.array_equal(candidate, gt):
            return lesions, transpose
    raise ValueError(
        f"{item['name']}: the label the network is scored against ({label.shape}) is not the union of the named "
        f"lesions of '{item['kind_map']}' ({gt.shape}); was the run made with another image_size than the data?"
    )


def _benchmark_dice(run_dir: str, evaluation: str) -> dict[str, float] | None:
    path = os.path.join(run_dir, f"eval_{evaluation}", "per_image.csv")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", newline="") as f:
        return {row["name"]: float(row["foreground_dice"]) for row in csv.DictReader(f)}


def analyse_run(run_dir: str, data_dir: str, evaluation: str, device: str = "cpu") -> dict:
    """Predict one run on one evaluation (:data:`EVALUATIONS`) and analyse every image."""
    split, key, copy = EVALUATIONS[evaluation]
    variant = _read_json(os.path.join(run_dir, "result.json"), "Run result")["settings"]["variant"]
    model_data = os.path.join(data_dir, copy or _benchmark_accuracy().VARIANTS[variant][2])
    lesion_data = os.path.join(data_dir, copy or "reports")  # a generic copy's reports name nothing: the originals'
    items = _read_json(os.path.join(lesion_data, "datalist.json"), "Datalist")[key]
    predictions = predict(run_dir, model_data, split, device)
    missing = sorted({item["name"] for item in items} - set(predictions))
    if missing:
        raise RuntimeError(f"{run_dir}: no prediction for {len(missing)} image(s) of {lesion_data}, e.g. {missing[0]}.")
    records = []
    for item in sorted(items, key=lambda x: x["name"]):
        prob, label = predictions[item["name"]]
        lesions, transpose = _lesions_oriented(item, lesion_data, label)
        record = analyse_image(prob.T if transpose else prob, lesions)
        records.append({"name": item["name"], "kind_critical": item.get("kind_critical"), **record})
    result = {"summary": summarise(records), "images": records}
    reference = _benchmark_dice(run_dir, evaluation)
    if reference is not None:
        result["benchmark_dice"] = _mean(list(reference.values()))
        result["benchmark_max_abs_diff"] = max(abs(r["dice"] - reference[r["name"]]) for r in records)
    return result


def main(
    runs_dir: str = "benchmark_results/accuracy_kinds/runs",
    variants=("tgcnet", "oracle"),
    seeds=(0, 1, 2),
    output_dir: str = "benchmark_results/analysis_kinds_errors",
    data_dir: str | None = None,
    evaluations=("test", "validation"),
    device: str = "cpu",
) -> str:
    """Analyse every (variant, seed) run; returns the path of ``errors.md``.

    Args:
        runs_dir: ``runs`` folder of ``scripts/benchmark_accuracy.py --task kinds``.
        variants, seeds: the runs ``<runs_dir>/<variant>_seed<seed>``.
        data_dir: the benchmark's data folder (``reports``, ``generic``, counterfactual copies); default
            ``<runs_dir>/../data``.
        evaluations: of :data:`EVALUATIONS`; sections 1-4 use the first, section 5 all of them.
        device: ``"cpu"`` or ``"cuda"`` (no AMP).
    """
    runs_dir = os.path.abspath(runs_dir)
    data_dir = os.path.abspath(data_dir or os.path.join(os.path.dirname(runs_dir), "data"))
    variants, seeds, evaluations = [str(v) for v in variants], [int(k) for k in seeds], list(evaluations)
    unknown = [v for v in variants if v not in _benchmark_accuracy().VARIANTS]
    if unknown:
        raise ValueError(f"Unknown variants {unknown}; choose from {list(_benchmark_accuracy().VARIANTS)}.")
    unknown = [e for e in evaluations if e not in EVALUATIONS]
    if unknown or not evaluations:
        raise ValueError(f"Unknown evaluations {unknown or evaluations}; choose from {list(EVALUATIONS)}.")
    runs = [(v, k, os.path.join(runs_dir, f"{v}_seed{k}")) for v in variants for k in seeds]
    for _, _, run_dir in runs:  # every missing file before the first (slow) prediction
        for name in ("result.json", os.path.join("models", "model.pt")):
            if not os.path.isfile(os.path.join(run_dir, name)):
                raise FileNotFoundError(f"Run '{run_dir}' is incomplete: '{os.path.join(run_dir, name)}' not found.")
    own = {"reports", *(_benchmark_accuracy().VARIANTS[v][2] for v in variants)}  # lesions are read from "reports"
    folders = set().union(*({EVALUATIONS[e][2]} if EVALUATIONS[e][2] else own for e in evaluations))
    for folder in sorted(folders):
        path = os.path.join(data_dir, folder, "datalist.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Data folder '{data_dir}' lacks '{path}'; give the benchmark's with --data_dir.")
    models = []
    for variant, seed, run_dir in runs:
        model = {"variant": variant, "seed": seed, "run_dir": os.path.relpath(run_dir, REPO_ROOT)}
        for evaluation in evaluations:
            started = time.time()
            model[evaluation] = analyse_run(run_dir, data_dir, evaluation, device)
            print(
                f"{variant} seed {seed} {evaluation}: Dice {model[evaluation]['summary']['dice']:.3f}, FP unnamed "
                f"{model[evaluation]['summary']['budget']['fp_unnamed']} px ({time.time() - started:.0f} s)",
                flush=True,
            )
        models.append(model)
    results = {
        "settings": {
            "runs_dir": os.path.relpath(runs_dir, REPO_ROOT),
            "data_dir": os.path.relpath(data_dir, REPO_ROOT),
            "variants": variants,
            "seeds": seeds,
            "evaluations": evaluations,
            "threshold": THRESHOLD,
            "band": BAND,
            "found_recall": FOUND,
            "painted_fraction": PAINTED,
            "date": time.strftime("%Y-%m-%d"),
            "command": "python " + " ".join([os.path.relpath(sys.argv[0], REPO_ROOT), *sys.argv[1:]]),
        },
        "models": models,
    }
    output_dir = os.path.abspath(output_dir)
    atomic_write_json(os.path.join(output_dir, "errors.json"), results, overwrite=True)
    markdown_path = os.path.join(output_dir, "errors.md")
    atomic_write_text(markdown_path, _markdown(results), overwrite=True)
    print(_markdown(results))
    return markdown_path


if __name__ == "__main__":
    fire.Fire(checked_flags(main))

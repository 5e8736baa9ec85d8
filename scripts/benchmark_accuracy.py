"""Accuracy benchmark on the report-referred chest X-ray demos: does TGC-Net follow the text, and does each part help?

Every variant is trained and evaluated with the TGC-Net bundle's own configs (``python -m monai.bundle run``) on the
same generated data, once per seed. Two tasks (``docs/benchmarks.md``):

* ``--task zones`` (section 1's demo, ``make_chest_xray_dataset``): lesions of one kind, reports name lung zones; the
  demo's random tiny CLIP.
* ``--task kinds`` (demo task v2, ``make_chest_xray_kinds_dataset``): consolidation, ground-glass opacity and nodules,
  reports name a subset by clinical term and zone; TGC-Net reads ``medical_knowledge_v2.json`` and the tiny CLIP is
  the contrastively pretrained one (``--clip_checkpoint``, default: the weights shipped with ``monai_ext``), frozen.

Variants:

* ``tgcnet``: the full network with the reports.
* ``generic_prompt``: the same network, every report (train, validation, test) replaced by one uninformative prompt.
* ``basicunet``: an image-only MONAI ``BasicUNet`` (``configs/baseline_unet.json``).
* ``oracle`` (kinds only): the same BasicUNet given the report's content as 3 extra input channels
  (``configs/demo_oracle.json``): the ceiling for reading the report.
* ``guide_decoder``: a GuideDecoder-like peer (``configs/guide_decoder.json``): trainable CNN encoder, the same frozen
  CLIP text encoder, text cross-attention in the decoder.
* ``no_cnn_branch``, ``no_knowledge``, ``no_vlcm``: TGC-Net ablations.

Each trained model is evaluated on the held-out test split (Dice, IoU, HD95 per image, plus dataset-level Dice) and on
counterfactual copies: each test image gets a report naming a different subset of its lesions and the matching mask,
so a model that ignores the report cannot score well there. The kinds task adds two counterfactual copies in wordings
no training report uses (held-out sentence frames, held-out clinical terms) and per-subset Dice (images where the zone
alone does not give the mask; images naming a nodule; reports naming two or more findings).

Writes ``accuracy.json``, ``accuracy.md`` and ``accuracy.png`` to ``output_dir``::

    python scripts/benchmark_accuracy.py --output_dir benchmark_results/accuracy --seeds "[0,1,2]"
    python scripts/benchmark_accuracy.py --task kinds --seeds "[0,1,2,3,4]" --parallel 2
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import fire

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from monai_ext.bundle.runner import run_bundle  # noqa: E402
from monai_ext.clip import ALIGNED_TINY_CLIP_CHECKPOINT  # noqa: E402
from monai_ext.demo import (  # noqa: E402
    make_chest_xray_dataset,
    make_chest_xray_kinds_dataset,
    make_kinds_rereported_split,
    make_rereported_split,
)
from monai_ext.flags import checked_flags  # noqa: E402
from monai_ext.io import atomic_write_json, atomic_write_text  # noqa: E402

BUNDLE = os.path.join(REPO_ROOT, "bundles", "tgcnet")
KNOWLEDGE_V2 = os.path.join(BUNDLE, "configs", "medical_knowledge_v2.json")
# variant -> (extra configs, overrides, dataset: "reports" or "generic")
VARIANTS = {
    "tgcnet": ([], {}, "reports"),
    "generic_prompt": ([], {}, "generic"),
    "basicunet": (["baseline_unet.json"], {}, "reports"),
    "oracle": (["baseline_unet.json", "demo_oracle.json"], {}, "reports"),
    "guide_decoder": (["guide_decoder.json"], {}, "reports"),
    "no_cnn_branch": ([], {"network_def#use_cnn_branch": False}, "reports"),
    "no_knowledge": ([], {"use_knowledge": False}, "reports"),
    # No VLCM, no similarity map: the alignment term is off too.
    "no_vlcm": ([], {"network_def#use_vlcm": False, "alignment_weight": 0.0}, "reports"),
}
# task -> variants it runs by default (the oracle needs the kinds task's oracle inputs)
TASK_VARIANTS = {
    "zones": ("tgcnet", "generic_prompt", "basicunet", "no_cnn_branch", "no_knowledge", "no_vlcm"),
    "kinds": tuple(VARIANTS),
}
# task -> counterfactual copies of the test split each model is also evaluated on
TASK_EVALUATIONS = {
    "zones": ("counterfactual",),
    "kinds": ("counterfactual", "counterfactual_frames", "counterfactual_terms"),
}
EVALUATION_ORDER = ("test", *dict.fromkeys(c for copies in TASK_EVALUATIONS.values() for c in copies))
# kinds task: subsets of an evaluation split, as predicates on its datalist items
SUBSETS = {
    "kind_critical": lambda item: item["kind_critical"],
    "names_nodule": lambda item: any(f["kind"] == "nodule" for f in item["findings_named"]),
    "multi_finding": lambda item: len(item["findings_named"]) >= 2,
}
METRICS = ("dice", "iou", "hd95")


def _make_zones_data(data_root: str, counts: dict, image_size: int) -> None:
    reports = os.path.join(data_root, "reports")
    make_chest_xray_dataset(reports, image_size=image_size, seed=0, **counts)
    make_rereported_split(
        reports, os.path.join(data_root, "generic"), splits=["training", "validation", "test"], mode="generic"
    )
    make_rereported_split(
        reports, os.path.join(data_root, "counterfactual"), splits="test", mode="counterfactual", seed=1
    )


def _make_kinds_data(data_root: str, counts: dict, image_size: int) -> None:
    reports = os.path.join(data_root, "reports")
    make_chest_xray_kinds_dataset(reports, image_size=image_size, seed=0, **counts)
    make_kinds_rereported_split(
        reports, os.path.join(data_root, "generic"), splits=["training", "validation", "test"], mode="generic"
    )
    # The three counterfactual copies draw the same subsets (same seed); only the wording differs.
    for name, phrasing in (
        ("counterfactual", "training"),
        ("counterfactual_frames", "held_out_frames"),
        ("counterfactual_terms", "held_out_terms"),
    ):
        make_kinds_rereported_split(
            reports, os.path.join(data_root, name), splits="test", mode="counterfactual", phrasing=phrasing, seed=1
        )


DATA_MAKERS = {"zones": _make_zones_data, "kinds": _make_kinds_data}


def _prepare_data(data_root: str, task: str, counts: dict, image_size: int) -> dict[str, str]:
    """The task's demo set, its generic-prompt copy and its counterfactual test copies (generated once, reused)."""
    stamp_path = os.path.join(data_root, "settings.json")
    stamp = {"task": task, **counts, "image_size": image_size}
    if os.path.isfile(stamp_path):
        with open(stamp_path, encoding="utf-8") as f:
            made_with = json.load(f)
        made_with.setdefault("task", "zones")  # stamps written before the kinds task existed
        if made_with != stamp:
            raise ValueError(
                f"{data_root} holds demo data made with {made_with}, not {stamp}; "
                "choose another output_dir for these settings."
            )
    elif os.path.isdir(os.path.join(data_root, "reports")):
        raise ValueError(
            f"{data_root} holds demo data of unknown settings (no settings.json); "
            "choose another output_dir or delete that folder."
        )
    else:
        DATA_MAKERS[task](data_root, counts, image_size)
        atomic_write_json(stamp_path, stamp, overwrite=True)
    return {name: os.path.join(data_root, name) for name in ("reports", "generic", *TASK_EVALUATIONS[task])}


def _subset_dice(eval_dir: str, dataset_dir: str, split: str = "test") -> dict[str, dict]:
    """Per-image mean Dice over each subset of :data:`SUBSETS`, from the evaluation's ``per_image.csv``."""
    with open(os.path.join(dataset_dir, "datalist.json"), encoding="utf-8") as f:
        items = {item["name"]: item for item in json.load(f)[split]}
    with open(os.path.join(eval_dir, "per_image.csv"), encoding="utf-8", newline="") as f:
        dice = {row["name"]: float(row["foreground_dice"]) for row in csv.DictReader(f)}
    missing = set(items) - set(dice)
    if missing:
        raise RuntimeError(
            f"{eval_dir}/per_image.csv lacks {len(missing)} images of {dataset_dir}, e.g. {min(missing)}."
        )
    subsets = {}
    for subset, member in SUBSETS.items():
        values = [dice[name] for name, item in items.items() if member(item)]
        subsets[subset] = {"dice": statistics.fmean(values) if values else None, "images": len(values)}
    return subsets


def _run_one(variant: str, seed: int, task: str, data: dict, run_dir: str, base_overrides: dict, reuse: bool) -> dict:
    """Train and evaluate one (variant, seed). Its result is kept in ``run_dir/result.json`` with the settings it
    was made with; with ``reuse``, a run already finished with the same settings is not trained again, so a killed
    benchmark continues where it stopped."""
    result_path = os.path.join(run_dir, "result.json")
    settings = {"variant": variant, "seed": seed, "overrides": base_overrides}
    if task != "zones":
        settings["task"] = task
    if reuse and os.path.isfile(result_path):
        with open(result_path, encoding="utf-8") as f:
            previous = json.load(f)
        if previous.get("settings") == settings:
            return {**previous["result"], "reused": True}
    configs, overrides, dataset = VARIANTS[variant]
    train_configs = ["train.json", "demo.json", *configs]
    common = {
        **base_overrides,
        **overrides,
        "seed": seed,
        "ckpt_dir": os.path.join(run_dir, "models"),
        "log_dir": os.path.join(run_dir, "runs"),
    }
    os.makedirs(run_dir, exist_ok=True)
    started = time.time()
    run_bundle(
        BUNDLE,
        train_configs,
        {**common, "dataset_dir": data[dataset], "output_dir": run_dir},
        log_file=os.path.join(run_dir, "train.log"),
    )
    results = {"variant": variant, "seed": seed, "train_seconds": time.time() - started}
    # Held-out test with the variant's own kind of reports, then the counterfactual reports.
    for name, dataset_dir in (("test", data[dataset]), *((c, data[c]) for c in TASK_EVALUATIONS[task])):
        out = os.path.join(run_dir, f"eval_{name}")
        run_bundle(
            BUNDLE,
            [*train_configs, "evaluate.json"],
            {**common, "dataset_dir": dataset_dir, "output_dir": out},
            log_file=os.path.join(run_dir, f"eval_{name}.log"),
        )
        with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
            report = json.load(f)
        results[name] = {
            **{m: report["per_image_mean"]["foreground"][m] for m in METRICS},
            "dataset_dice": report["dataset_level"]["foreground"]["dice"],
            "images": report["num_images"],
        }
        if task == "kinds":
            # Subsets are defined by the findings the report names, so the generic copy is read with the originals'.
            results[name]["subsets"] = _subset_dice(out, data["reports"] if name == "test" else dataset_dir)
    atomic_write_json(result_path, {"settings": settings, "result": results}, overwrite=True)
    return results


def _evaluations(runs: list[dict]) -> list[str]:
    """The evaluation copies in the runs' results, in the order of :data:`EVALUATION_ORDER` (result files sort keys)."""
    present = [name for name in runs[0] if isinstance(runs[0][name], dict) and "dice" in runs[0][name]] if runs else []
    return sorted(present, key=EVALUATION_ORDER.index)


def _stats(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values) if values else None,
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
        "values": values,
    }


def _summarise(runs: list[dict]) -> dict:
    summary = {}
    for variant in dict.fromkeys(r["variant"] for r in runs):
        rows = [r for r in runs if r["variant"] == variant]
        summary[variant] = {}
        for split, metric in itertools.product(_evaluations(rows), (*METRICS, "dataset_dice")):
            summary[variant][f"{split}_{metric}"] = _stats(
                [r[split][metric] for r in rows if r[split][metric] is not None]
            )
        for split in _evaluations(rows):
            for subset in rows[0][split].get("subsets", {}):
                values = [r[split]["subsets"][subset]["dice"] for r in rows]
                summary[variant][f"{split}_{subset}_dice"] = _stats([v for v in values if v is not None])
    return summary


def _cell(entry: dict | None, digits: int = 3) -> str:
    if entry is None or entry["mean"] is None:
        return "n/a"
    return f"{entry['mean']:.{digits}f} ± {entry['std']:.{digits}f}"


def _markdown(results: dict) -> str:
    s = results["settings"]
    summary = results["summary"]
    evaluations = _evaluations(results["runs"])
    lines = [
        f"# Accuracy on the report-referred chest X-ray demo (task '{s['task']}')",
        "",
        f"{s['counts']['n_train']}/{s['counts']['n_val']}/{s['counts']['n_test']} train/validation/test images of "
        f"{s['image_size']} px, {s['max_epochs']} epochs, seeds {s['seeds']}, device "
        f"{s['device']}, {s['date']}. Mean ± standard deviation over seeds. Dice, IoU and HD95 (pixels) are per-image "
        "means (LViT's convention); 'dataset Dice' accumulates all test pixels first (GuideDecoder / TGC-Net's "
        "convention).",
        "",
        f"Command: `{s['command']}`",
        "",
        "| variant | test Dice | test IoU | test HD95 | test dataset Dice | "
        + " | ".join(f"{name} Dice" for name in evaluations[1:])
        + " |",
        "| --- " * (5 + len(evaluations) - 1) + "|",
    ]
    for variant, m in summary.items():
        lines.append(
            f"| {variant} | {_cell(m['test_dice'])} | {_cell(m['test_iou'])} | {_cell(m['test_hd95'], 1)} | "
            f"{_cell(m['test_dataset_dice'])} | "
            + " | ".join(_cell(m.get(f"{name}_dice")) for name in evaluations[1:])
            + " |"
        )
    first = results["runs"][0] if results["runs"] else {}
    for name in evaluations:
        subsets = list(first[name].get("subsets", {}))
        if not subsets:
            continue
        counts = ", ".join(f"{subset} {first[name]['subsets'][subset]['images']}" for subset in subsets)
        lines += ["", f"Per-image mean Dice on subsets of '{name}' ({first[name]['images']} images; {counts}):", ""]
        lines.append("| variant | all | " + " | ".join(subsets) + " |")
        lines.append("| --- " * (2 + len(subsets)) + "|")
        for variant, m in summary.items():
            cells = [_cell(m.get(f"{name}_dice"))] + [_cell(m.get(f"{name}_{subset}_dice")) for subset in subsets]
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += ["", "Every seed (test Dice):", "", "| variant | " + " | ".join(f"seed {k}" for k in s["seeds"]) + " |"]
    lines.append("| --- " * (1 + len(s["seeds"])) + "|")
    for variant in summary:
        by_seed = {r["seed"]: r["test"]["dice"] for r in results["runs"] if r["variant"] == variant}
        lines.append(
            f"| {variant} | "
            + " | ".join("n/a" if by_seed.get(k) is None else f"{by_seed[k]:.3f}" for k in s["seeds"])
            + " |"
        )
    return "\n".join(lines) + "\n"


def _plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = sorted(results["summary"], key=list(VARIANTS).index)  # the table's order, also read back from JSON
    evaluations = _evaluations(results["runs"])
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(variants)), 4))
    width = 0.8 / len(evaluations)
    for index, split in enumerate(evaluations):
        offset = (index - (len(evaluations) - 1) / 2) * width
        means = [results["summary"][v][f"{split}_dice"]["mean"] or 0 for v in variants]
        stds = [results["summary"][v][f"{split}_dice"]["std"] for v in variants]
        ax.bar([i + offset for i in range(len(variants))], means, width, yerr=stds, capsize=3, label=f"{split} Dice")
    ax.set_xticks(range(len(variants)), variants, rotation=20)
    ax.set(
        ylim=(0, 1),
        ylabel="per-image mean Dice",
        title=f"Report-referred chest X-ray demo ({results['settings']['task']})",
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the axes: no bar hidden
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _previous_runs(path: str, settings: dict) -> dict[tuple[str, int], dict]:
    """The runs of an earlier ``accuracy.json`` by (variant, seed), after checking it was made with ``settings``."""
    with open(path, encoding="utf-8") as f:
        earlier = json.load(f)
    keys = [k for k in settings if k != "seeds"]
    differ = {k: (earlier["settings"].get(k), settings[k]) for k in keys if earlier["settings"].get(k) != settings[k]}
    if differ:
        raise ValueError(
            f"{path} was made with other settings; (there, here): {differ}. Run with the same settings or without "
            "--previous."
        )
    return {(run["variant"], run["seed"]): {**run, "reused": True} for run in earlier["runs"]}


def main(
    output_dir: str | None = None,
    task: str = "zones",
    variants=None,
    seeds=(0, 1, 2),
    n_train: int = 160,
    n_val: int = 32,
    n_test: int = 48,
    image_size: int = 128,
    max_epochs: int = 24,
    device: str = "cpu",
    parallel: int = 1,
    learning_rate: float | None = None,
    clip_checkpoint: str | None = None,
    reuse: bool = True,
    previous: str | None = None,
) -> str:
    """Train and evaluate every (variant, seed); returns the path of ``accuracy.md``.

    Args:
        output_dir: default ``benchmark_results/accuracy`` (zones) or ``benchmark_results/accuracy_kinds``.
        task: ``"zones"`` (section 1's demo) or ``"kinds"`` (demo task v2).
        variants: default: every variant the task runs (:data:`TASK_VARIANTS`).
        device: ``"cpu"`` or ``"cuda"`` (AMP on CUDA).
        parallel: bundle runs at a time (each is a separate process).
        learning_rate: overrides the demo configuration's learning rate.
        clip_checkpoint: CLIP weights for the kinds task (default: the aligned tiny CLIP shipped with ``monai_ext``);
            the zones task keeps the demo's random tiny CLIP.
        reuse: take runs already finished in ``output_dir`` with the same settings instead of training them again
            (a killed benchmark continues; more seeds can be added later); ``False`` trains everything.
        previous: an earlier ``accuracy.json`` (e.g. one kept under ``docs/benchmarks``) whose runs are taken for the
            (variant, seed) pairs it holds, so a fresh checkout extends a stored table with more seeds; its settings
            (task, counts, size, epochs, learning rate, device, CLIP weights) must equal this run's.
    """
    if task not in TASK_VARIANTS:
        raise ValueError(f"Unknown task {task!r}; choose from {list(TASK_VARIANTS)}.")
    variants = tuple(TASK_VARIANTS[task] if variants is None else variants)
    unknown = set(variants) - set(TASK_VARIANTS[task])
    if unknown:
        raise ValueError(f"Variants {sorted(unknown)} do not run on task {task!r}; choose from {TASK_VARIANTS[task]}.")
    output_dir = os.path.abspath(output_dir or ("benchmark_results/accuracy" + ("" if task == "zones" else f"_{task}")))
    counts = {"n_train": n_train, "n_val": n_val, "n_test": n_test}
    data = _prepare_data(os.path.join(output_dir, "data"), task, counts, image_size)
    base = {
        "max_epochs": max_epochs,
        "image_size": image_size,
        "device": f"$torch.device('{device}')",
        "amp": device.startswith("cuda"),
    }
    if task == "kinds":
        clip_checkpoint = os.path.abspath(clip_checkpoint or ALIGNED_TINY_CLIP_CHECKPOINT)
        if not os.path.isfile(clip_checkpoint):
            raise FileNotFoundError(
                f"CLIP weights '{clip_checkpoint}' not found; make them with scripts/pretrain_clip.py or pass "
                "--clip_checkpoint."
            )
        base.update(clip_checkpoint=clip_checkpoint, knowledge_file=KNOWLEDGE_V2)
    if learning_rate is not None:
        base["learning_rate"] = learning_rate
    settings = {
        "task": task,
        "counts": counts,
        "image_size": image_size,
        "max_epochs": max_epochs,
        "seeds": list(seeds),
        "learning_rate": learning_rate,
        "clip_checkpoint": base.get("clip_checkpoint") and os.path.relpath(base["clip_checkpoint"], REPO_ROOT),
        "device": device,
    }
    earlier = _previous_runs(previous, settings) if previous else {}
    jobs = [(v, s) for s in seeds for v in variants if (v, s) not in earlier]
    runs, failures = [earlier[(v, s)] for s in seeds for v in variants if (v, s) in earlier], []
    for run in runs:
        print(f"{run['variant']} seed {run['seed']}: taken from {previous}", flush=True)
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {
            pool.submit(_run_one, v, s, task, data, os.path.join(output_dir, "runs", f"{v}_seed{s}"), base, reuse): (
                v,
                s,
            )
            for v, s in jobs
        }
        for done, future in enumerate(as_completed(futures), 1):
            variant, seed = futures[future]
            try:
                runs.append(future.result())
                print(
                    f"[{done}/{len(jobs)}] {variant} seed {seed}: "
                    + ", ".join(f"{name} Dice {runs[-1][name]['dice']:.3f}" for name in _evaluations(runs[-1:]))
                    + (" (reused)" if runs[-1].get("reused") else ""),
                    flush=True,
                )
            except RuntimeError as error:
                failures.append({"variant": variant, "seed": seed, "error": str(error)})
                print(f"[{done}/{len(jobs)}] {variant} seed {seed} FAILED: {error}", flush=True)
    runs.sort(key=lambda r: (list(VARIANTS).index(r["variant"]), r["seed"]))
    results = {
        "settings": {
            **settings,
            "date": time.strftime("%Y-%m-%d"),
            "command": "python " + " ".join([os.path.relpath(sys.argv[0], REPO_ROOT), *sys.argv[1:]]),
        },
        "runs": runs,
        "failures": failures,
        "summary": _summarise(runs),
    }
    atomic_write_json(os.path.join(output_dir, "accuracy.json"), results, overwrite=True)
    markdown_path = os.path.join(output_dir, "accuracy.md")
    atomic_write_text(markdown_path, _markdown(results), overwrite=True)
    if runs:
        _plot(results, os.path.join(output_dir, "accuracy.png"))
    print(_markdown(results))
    if failures:
        raise SystemExit(f"{len(failures)} run(s) failed; see the logs under {output_dir}/runs.")
    return markdown_path


if __name__ == "__main__":
    fire.Fire(checked_flags(main))

"""Accuracy benchmark on the report-referred chest X-ray demo: does TGC-Net follow the text?

Every variant is trained and evaluated with the TGC-Net bundle's own configs (``python -m monai.bundle run``) on the
same generated data, once per seed:

* ``tgcnet``: the full network with the reports.
* ``generic_prompt``: the same network, every report (train, validation, test) replaced by one uninformative prompt.
* ``basicunet``: an image-only MONAI ``BasicUNet`` (``configs/baseline_unet.json``).
* ``no_cnn_branch``, ``no_knowledge``, ``no_vlcm``: TGC-Net ablations.

Each trained model is evaluated on the held-out test split (Dice, IoU, HD95 per image, plus dataset-level Dice) and on
its counterfactual copy: every test image with two or more lesions gets a report naming a different subset of them and
the matching mask. A model that ignores the report cannot score well there.

Writes ``accuracy.json``, ``accuracy.md`` and ``accuracy.png`` to ``output_dir``::

    python scripts/benchmark_accuracy.py --output_dir benchmark_results/accuracy --seeds "[0,1,2]"
"""

from __future__ import annotations

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
from monai_ext.demo import make_chest_xray_dataset, make_rereported_split  # noqa: E402
from monai_ext.flags import checked_flags  # noqa: E402
from monai_ext.io import atomic_write_json, atomic_write_text  # noqa: E402

BUNDLE = os.path.join(REPO_ROOT, "bundles", "tgcnet")
# variant -> (extra configs, overrides, dataset: "reports" or "generic")
VARIANTS = {
    "tgcnet": ([], {}, "reports"),
    "generic_prompt": ([], {}, "generic"),
    "basicunet": (["baseline_unet.json"], {}, "reports"),
    "no_cnn_branch": ([], {"network_def#use_cnn_branch": False}, "reports"),
    "no_knowledge": ([], {"use_knowledge": False}, "reports"),
    # No VLCM, no similarity map: the alignment term is off too.
    "no_vlcm": ([], {"network_def#use_vlcm": False, "alignment_weight": 0.0}, "reports"),
}
METRICS = ("dice", "iou", "hd95")


def _prepare_data(data_root: str, counts: dict, image_size: int) -> dict[str, str]:
    """The demo set, its generic-prompt copy and its counterfactual test split (generated once, reused)."""
    reports = os.path.join(data_root, "reports")
    stamp_path = os.path.join(data_root, "settings.json")
    stamp = {**counts, "image_size": image_size}
    if os.path.isfile(stamp_path):
        with open(stamp_path, encoding="utf-8") as f:
            made_with = json.load(f)
        if made_with != stamp:
            raise ValueError(
                f"{data_root} holds demo data made with {made_with}, not {stamp}; "
                "choose another output_dir for these settings."
            )
    elif os.path.isdir(reports):
        raise ValueError(
            f"{data_root} holds demo data of unknown settings (no settings.json); "
            "choose another output_dir or delete that folder."
        )
    else:
        make_chest_xray_dataset(reports, image_size=image_size, seed=0, **counts)
    paths = {
        "reports": reports,
        "generic": os.path.join(data_root, "generic"),
        "counterfactual": os.path.join(data_root, "counterfactual"),
    }
    if not os.path.isdir(paths["generic"]):
        make_rereported_split(reports, paths["generic"], splits=["training", "validation", "test"], mode="generic")
    if not os.path.isdir(paths["counterfactual"]):
        make_rereported_split(reports, paths["counterfactual"], splits="test", mode="counterfactual", seed=1)
    atomic_write_json(stamp_path, stamp, overwrite=True)
    return paths


def _run_one(variant: str, seed: int, data: dict, run_dir: str, base_overrides: dict, reuse: bool) -> dict:
    """Train and evaluate one (variant, seed). Its result is kept in ``run_dir/result.json`` with the settings it
    was made with; with ``reuse``, a run already finished with the same settings is not trained again, so a killed
    benchmark continues where it stopped."""
    result_path = os.path.join(run_dir, "result.json")
    settings = {"variant": variant, "seed": seed, "overrides": base_overrides}
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
    for name, dataset_dir in (("test", data[dataset]), ("counterfactual", data["counterfactual"])):
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
    atomic_write_json(result_path, {"settings": settings, "result": results}, overwrite=True)
    return results


def _summarise(runs: list[dict]) -> dict:
    summary = {}
    for variant in dict.fromkeys(r["variant"] for r in runs):
        rows = [r for r in runs if r["variant"] == variant]
        summary[variant] = {}
        for split, metric in itertools.product(("test", "counterfactual"), (*METRICS, "dataset_dice")):
            values = [r[split][metric] for r in rows if r[split][metric] is not None]
            summary[variant][f"{split}_{metric}"] = {
                "mean": statistics.fmean(values) if values else None,
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "n": len(values),
            }
    return summary


def _markdown(results: dict) -> str:
    s = results["settings"]
    lines = [
        "# Accuracy on the report-referred chest X-ray demo",
        "",
        f"{s['counts']['n_train']}/{s['counts']['n_val']}/{s['counts']['n_test']} train/validation/test images of "
        f"{s['image_size']} px, {s['max_epochs']} epochs, seeds {s['seeds']}, device "
        f"{s['device']}, {s['date']}. Mean ± standard deviation over seeds. Dice, IoU and HD95 (pixels) are per-image "
        "means (LViT's convention); 'dataset Dice' accumulates all test pixels first (GuideDecoder / TGC-Net's "
        "convention).",
        "",
        f"Command: `{s['command']}`",
        "",
        "| variant | test Dice | test IoU | test HD95 | test dataset Dice | counterfactual Dice | counterfactual IoU |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]

    def cell(entry, digits=3):
        return "n/a" if entry["mean"] is None else f"{entry['mean']:.{digits}f} ± {entry['std']:.{digits}f}"

    for variant, m in results["summary"].items():
        lines.append(
            f"| {variant} | {cell(m['test_dice'])} | {cell(m['test_iou'])} | {cell(m['test_hd95'], 1)} | "
            f"{cell(m['test_dataset_dice'])} | {cell(m['counterfactual_dice'])} | {cell(m['counterfactual_iou'])} |"
        )
    return "\n".join(lines) + "\n"


def _plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(results["summary"])
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.38
    for offset, split in ((-width / 2, "test"), (width / 2, "counterfactual")):
        means = [results["summary"][v][f"{split}_dice"]["mean"] or 0 for v in variants]
        stds = [results["summary"][v][f"{split}_dice"]["std"] for v in variants]
        ax.bar([i + offset for i in range(len(variants))], means, width, yerr=stds, capsize=3, label=f"{split} Dice")
    ax.set_xticks(range(len(variants)), variants, rotation=20)
    ax.set(ylim=(0, 1), ylabel="per-image mean Dice", title="Report-referred chest X-ray demo")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(
    output_dir: str = "benchmark_results/accuracy",
    variants=tuple(VARIANTS),
    seeds=(0, 1, 2),
    n_train: int = 160,
    n_val: int = 32,
    n_test: int = 48,
    image_size: int = 128,
    max_epochs: int = 24,
    device: str = "cpu",
    parallel: int = 1,
    learning_rate: float | None = None,
    reuse: bool = True,
) -> str:
    """Train and evaluate every (variant, seed); returns the path of ``accuracy.md``.

    Args:
        device: ``"cpu"`` or ``"cuda"`` (AMP on CUDA).
        parallel: bundle runs at a time (each is a separate process).
        learning_rate: overrides the demo configuration's learning rate.
        reuse: take runs already finished in ``output_dir`` with the same settings instead of training them again
            (a killed benchmark continues; more seeds can be added later); ``False`` trains everything.
    """
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"Unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}.")
    output_dir = os.path.abspath(output_dir)
    counts = {"n_train": n_train, "n_val": n_val, "n_test": n_test}
    data = _prepare_data(os.path.join(output_dir, "data"), counts, image_size)
    base = {
        "max_epochs": max_epochs,
        "image_size": image_size,
        "device": f"$torch.device('{device}')",
        "amp": device.startswith("cuda"),
    }
    if learning_rate is not None:
        base["learning_rate"] = learning_rate
    jobs = [(v, s) for s in seeds for v in variants]
    runs, failures = [], []
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {
            pool.submit(_run_one, v, s, data, os.path.join(output_dir, "runs", f"{v}_seed{s}"), base, reuse): (v, s)
            for v, s in jobs
        }
        for done, future in enumerate(as_completed(futures), 1):
            variant, seed = futures[future]
            try:
                runs.append(future.result())
                print(
                    f"[{done}/{len(jobs)}] {variant} seed {seed}: test Dice {runs[-1]['test']['dice']:.3f}, "
                    f"counterfactual Dice {runs[-1]['counterfactual']['dice']:.3f}"
                    + (" (reused)" if runs[-1].get("reused") else ""),
                    flush=True,
                )
            except RuntimeError as error:
                failures.append({"variant": variant, "seed": seed, "error": str(error)})
                print(f"[{done}/{len(jobs)}] {variant} seed {seed} FAILED: {error}", flush=True)
    runs.sort(key=lambda r: (list(VARIANTS).index(r["variant"]), r["seed"]))
    results = {
        "settings": {
            "counts": counts,
            "image_size": image_size,
            "max_epochs": max_epochs,
            "seeds": list(seeds),
            "learning_rate": learning_rate,
            "device": device,
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

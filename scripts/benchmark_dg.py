"""VLSA-Net's domain-generalisation table over several seeds: one command, every seed, mean ± sd, a plot.

Runs ``scripts/evaluate_dg.py --ablation`` (train on the source domain, test on every unseen domain, all five
variants on the same budget) once per seed into ``<output_dir>/seed<S>``, each as its own process, then summarises the
mean unseen-domain Dice per variant. A seed whose ``dg_results.json`` already holds the same command is reused, so a
killed benchmark continues and seeds can be added later.

``--clip aligned`` (default) runs the aligned tiny CLIP shipped with ``monai_ext`` and the demo class prompts written
in its captions' words (``configs/prompts_<task>_demo.json``); ``--clip random`` the demo's random tiny CLIP with the
bundle's own prompts (section 1 of ``docs/benchmarks.md``)::

    OMP_NUM_THREADS=1 python scripts/benchmark_dg.py --task fundus --seeds "[0,1,2,3,4]" --parallel 2

Writes ``dg_seeds.json``, ``dg_seeds.md`` and ``dg_seeds.png`` to ``output_dir``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import fire

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from monai_ext.apps.domain_generalization import VARIANTS  # noqa: E402
from monai_ext.clip import ALIGNED_TINY_CLIP_CHECKPOINT  # noqa: E402
from monai_ext.flags import checked_flags  # noqa: E402
from monai_ext.io import atomic_write_json, atomic_write_text  # noqa: E402

BUNDLE_CONFIGS = os.path.join(REPO_ROOT, "bundles", "vlsanet", "configs")
EVALUATE_DG = os.path.join(REPO_ROOT, "scripts", "evaluate_dg.py")


def _seed_command(task: str, seed: int, seed_dir: str, max_epochs: int, n_per_domain: int, overrides: dict) -> list:
    command = [sys.executable, EVALUATE_DG, "--task", task, "--ablation", "--max_epochs", str(max_epochs)]
    command += ["--n_per_domain", str(n_per_domain), "--seed", str(seed), "--output_dir", seed_dir, "--overwrite"]
    if overrides:
        # a Python literal, as fire parses it: JSON's lower-case true would reach the bundle as the text 'true'
        command += ["--overrides", repr(overrides)]
    return command


def _run_seed(command: list, seed_dir: str, reuse: bool) -> dict:
    """``dg_results.json`` of one seed, made by ``command`` unless a finished run of the same command is there."""
    results_path = os.path.join(seed_dir, "dg_results.json")
    stamp_path = os.path.join(seed_dir, "benchmark_command.json")
    if reuse and os.path.isfile(results_path) and os.path.isfile(stamp_path):
        with open(stamp_path, encoding="utf-8") as f:
            if json.load(f) == command[1:]:
                with open(results_path, encoding="utf-8") as g:
                    return json.load(g)
    log_path = seed_dir + ".log"
    with open(log_path, "w", encoding="utf-8") as log:
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:4])} ... failed with exit code {finished.returncode}; see {log_path}.")
    atomic_write_json(stamp_path, command[1:], overwrite=True)
    with open(results_path, encoding="utf-8") as f:
        return json.load(f)


def _dice_by_variant(results: dict, target: str = "mean") -> dict[str, float]:
    """Mean Dice per variant on one target domain (default ``"mean"``: the mean over the unseen domains)."""
    return {row["variant"]: row["mean Dice"] for row in results["rows"] if row["target_domain"] == target}


def _dice_by_variant_and_seed(results: dict[int, dict], target: str) -> dict[str, dict[str, float]]:
    """``{variant: {seed: Dice}}`` on one target domain (``"mean"``: the mean over them) from each seed's results."""
    per_seed = {seed: _dice_by_variant(seed_results, target) for seed, seed_results in results.items()}
    return {variant: {str(seed): dice[variant] for seed, dice in per_seed.items()} for variant in VARIANTS}


def _mean_sd(values: list[float]) -> str:
    """``"mean ± sd"`` of one table cell (sd 0 for a single seed)."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {sd:.2f}"


def _markdown(summary: dict) -> str:
    s = summary["settings"]
    seeds = s["seeds"]
    lines = [
        f"# VLSA-Net single-source DG on the synthetic {s['task']} demo, {len(seeds)} seeds",
        "",
        f"Trained on '{summary['source']}', tested on {', '.join(summary['targets'])}; {s['max_epochs']} epochs, "
        f"{s['n_per_domain']} images per domain, CLIP: {s['clip']}, class prompts: {s['class_prompts'] or 'bundle'}"
        + (f", config overrides: `{json.dumps(s['overrides'])}`" if s.get("overrides") else "")
        + ". "
        f"Mean unseen-domain Dice (%, {summary['aggregation']} mean over each target domain, then the "
        "mean over domains).",
        "",
        f"Command: `{s['command']}`",
        "",
        "| variant | " + " | ".join(f"seed {k}" for k in seeds) + " | mean ± sd | full above it in |",
        "| --- " * (len(seeds) + 3) + "|",
    ]
    full = summary["per_seed"].get("full", {})
    for variant, by_seed in summary["per_seed"].items():
        values = [by_seed[str(k)] for k in seeds]
        wins = "" if variant == "full" else f"{sum(full[str(k)] > by_seed[str(k)] for k in seeds)} of {len(seeds)}"
        lines.append(f"| {variant} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {_mean_sd(values)} | {wins} |")
    targets = list(summary.get("per_target", {}))
    if targets:
        lines += ["", "Per target domain (Dice %, mean ± sd over the seeds):", ""]
        lines += ["| variant | " + " | ".join(targets) + " |", "| --- " * (len(targets) + 1) + "|"]
        for variant in summary["per_seed"]:
            cells = [_mean_sd([summary["per_target"][target][variant][str(k)] for k in seeds]) for target in targets]
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot(summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(summary["per_seed"])
    fig, ax = plt.subplots(figsize=(8, 4))
    for index, variant in enumerate(variants):
        values = list(summary["per_seed"][variant].values())
        ax.scatter([index] * len(values), values, color="tab:blue", alpha=0.6)
        ax.hlines(statistics.fmean(values), index - 0.3, index + 0.3, color="black")
    ax.set_xticks(range(len(variants)), variants, rotation=20)
    ax.set(ylabel="mean unseen-domain Dice (%)", title=f"VLSA-Net DG, synthetic {summary['settings']['task']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(
    task: str = "fundus",
    output_dir: str | None = None,
    seeds=(0, 1, 2, 3, 4),
    max_epochs: int = 30,
    n_per_domain: int = 40,
    clip: str = "aligned",
    parallel: int = 1,
    reuse: bool = True,
    overrides: dict | None = None,
) -> str:
    """Run every seed (see the module docstring); returns the path of ``dg_seeds.md``.

    Args:
        task: ``"fundus"`` or ``"cardiac"``.
        output_dir: default ``benchmark_results/dg_<task>_<clip>``.
        clip: ``"aligned"`` (the shipped pretrained tiny CLIP, demo prompts) or ``"random"`` (the demo's default).
        parallel: seeds at a time (each a separate process; set ``OMP_NUM_THREADS`` to cores / parallel).
        reuse: take seeds already finished with the same command instead of running them again.
        overrides: bundle config overrides for every run of every seed, e.g. ``"{'augment_intensity_curve': True}"``
            (use another ``output_dir`` for them: a seed made with other overrides is run again, not reused).
    """
    if clip not in ("aligned", "random"):
        raise ValueError(f"clip must be 'aligned' or 'random', got {clip!r}.")
    output_dir = os.path.abspath(output_dir or os.path.join("benchmark_results", f"dg_{task}_{clip}"))
    os.makedirs(output_dir, exist_ok=True)
    run_overrides, prompts = {}, None
    if clip == "aligned":
        prompts = os.path.join(BUNDLE_CONFIGS, f"prompts_{task}_demo.json")
        run_overrides = {"clip_checkpoint": ALIGNED_TINY_CLIP_CHECKPOINT, "class_prompts": prompts}
    run_overrides.update(overrides or {})
    jobs = {
        seed: _seed_command(
            task, seed, os.path.join(output_dir, f"seed{seed}"), max_epochs, n_per_domain, run_overrides
        )
        for seed in seeds
    }
    started = time.time()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {
            seed: pool.submit(_run_seed, command, os.path.join(output_dir, f"seed{seed}"), reuse)
            for seed, command in jobs.items()
        }
        results = {}
        for seed, future in futures.items():
            results[seed] = future.result()
            means = _dice_by_variant(results[seed])
            print(f"seed {seed}: " + ", ".join(f"{v} {d:.2f}" for v, d in means.items()), flush=True)
    first = results[seeds[0]]
    summary = {
        "settings": {
            "task": task,
            "seeds": list(seeds),
            "max_epochs": max_epochs,
            "n_per_domain": n_per_domain,
            "clip": "aligned tiny CLIP (monai_ext/clip_weights)" if clip == "aligned" else "random tiny CLIP",
            "class_prompts": None if prompts is None else os.path.relpath(prompts, REPO_ROOT),
            "overrides": dict(overrides or {}),
            "date": time.strftime("%Y-%m-%d"),
            "minutes": (time.time() - started) / 60,
            "command": "python " + " ".join([os.path.relpath(sys.argv[0], REPO_ROOT), *sys.argv[1:]]),
        },
        "source": first["source"],
        "targets": first["targets"],
        "aggregation": first["aggregation"],
        "per_seed": _dice_by_variant_and_seed(results, "mean"),
        "per_target": {target: _dice_by_variant_and_seed(results, target) for target in first["targets"]},
    }
    atomic_write_json(os.path.join(output_dir, "dg_seeds.json"), summary, overwrite=True)
    markdown_path = os.path.join(output_dir, "dg_seeds.md")
    atomic_write_text(markdown_path, _markdown(summary), overwrite=True)
    _plot(summary, os.path.join(output_dir, "dg_seeds.png"))
    print(_markdown(summary))
    return markdown_path


if __name__ == "__main__":
    fire.Fire(checked_flags(main))

"""Streaming inference benchmark: the TGC-Net bundle's inference config over a folder of many demo images (a few of
them corrupt), with bounded memory; per-file failures are reported at the end without stopping the batch.

It generates ``n_images`` synthetic chest X-rays (``make_chest_xray_dataset``, ``image_size`` pixels), truncates
``n_corrupt`` of them and adds an empty file, saves untrained tiny-CLIP TGC-Net weights (speed and memory do not
depend on the weights), runs ``configs/inference.json`` + ``configs/demo_inference.json`` and prints: images,
failures, wall time, images/s, peak RSS (``resource.getrusage``), and the resident memory sampled while streaming
(after the first 10 % of the items and at the end: bounded memory means these stay flat).

Usage::

    OMP_NUM_THREADS=1 python scripts/benchmark_inference_stream.py --n_images 2000 --image_size 64 --work_dir /tmp/bench
"""

from __future__ import annotations

import glob
import json
import os
import resource
import shutil
import sys
import time

import fire

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = os.path.join(REPO, "bundles", "tgcnet")


def current_rss_mb() -> float:
    """Resident set size now (Linux /proc), in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def prepare(work_dir: str, n_images: int, image_size: int, n_corrupt: int, seed: int = 0) -> tuple[str, str]:
    """Demo images in ``work_dir/data/Test_Folder/img`` (some corrupt, one empty) and weights in ``work_dir/models``."""
    import torch
    from monai.bundle import ConfigParser
    from monai_ext.demo import make_chest_xray_dataset
    from monai_ext.io import atomic_save

    data_dir = os.path.join(work_dir, "data")
    image_dir = os.path.join(data_dir, "Test_Folder", "img")
    if not os.path.isdir(image_dir) or len(glob.glob(os.path.join(image_dir, "*.png"))) < n_images:
        shutil.rmtree(data_dir, ignore_errors=True)
        make_chest_xray_dataset(data_dir, n_train=0, n_val=0, n_test=n_images, image_size=image_size, seed=seed)
        images = sorted(glob.glob(os.path.join(image_dir, "*.png")))
        step = max(1, len(images) // max(1, n_corrupt))
        for path in images[::step][:n_corrupt]:
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)
        open(os.path.join(image_dir, "zz_empty.png"), "wb").close()
    ckpt_dir = os.path.join(work_dir, "models")
    if not os.path.isfile(os.path.join(ckpt_dir, "model.pt")):
        parser = ConfigParser()
        parser.read_config([os.path.join(BUNDLE, "configs", n) for n in ("inference.json", "demo_inference.json")])
        parser["bundle_root"] = BUNDLE
        torch.manual_seed(seed)
        atomic_save(parser.get_parsed_content("network_def").state_dict(), os.path.join(ckpt_dir, "model.pt"))
    return image_dir, ckpt_dir


def run(
    work_dir: str = "/tmp/monai_ext_stream_bench",
    n_images: int = 2000,
    image_size: int = 64,
    n_corrupt: int = 5,
    max_overlays: int = 0,
    json_out: str | None = None,
) -> dict:
    """Run the benchmark; returns the figures (printed as JSON on the command line, written to ``json_out`` if given)."""
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    image_dir, ckpt_dir = prepare(work_dir, n_images, image_size, n_corrupt)
    output_dir = os.path.join(work_dir, "predictions")
    shutil.rmtree(output_dir, ignore_errors=True)
    rss_before = current_rss_mb()
    workflow = ConfigWorkflow(
        config_file=[os.path.join(BUNDLE, "configs", n) for n in ("inference.json", "demo_inference.json")],
        workflow_type="infer",
        bundle_root=BUNDLE,
        dataset_dir=image_dir,
        image_glob="*.png",
        text="Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.",
        ckpt_dir=ckpt_dir,
        output_dir=output_dir,
        image_size=image_size,
        max_overlays=max_overlays,
    )
    workflow.initialize()
    evaluator = workflow.parser.get_parsed_content("evaluator")
    total = len(workflow.parser.get_parsed_content("datalist"))
    samples: dict[int, float] = {}

    @evaluator.on(Events.ITERATION_COMPLETED)
    def _sample(engine):
        i = engine.state.iteration
        if i == max(1, total // 10) or i % 250 == 0:
            samples[i] = round(current_rss_mb(), 1)

    start = time.perf_counter()
    workflow.run()
    seconds = time.perf_counter() - start
    workflow.finalize()
    with open(os.path.join(output_dir, "failures.json"), encoding="utf-8") as f:
        failures = json.load(f)
    processed = evaluator.state.iteration
    figures = {
        "images": total,
        "predicted": processed,
        "masks_written": len(glob.glob(os.path.join(output_dir, "masks", "*.png"))),
        "failed": failures["num_failed"],
        "failed_files": [os.path.basename(f["item"]) for f in failures["failures"]],
        "image_size": image_size,
        "seconds": round(seconds, 1),
        "images_per_second": round(processed / seconds, 1),
        "rss_before_run_mib": round(rss_before, 1),
        "rss_samples_mib": samples,
        "rss_end_mib": round(current_rss_mb(), 1),
        "peak_rss_mib": round(peak_rss_mb(), 1),
    }
    if json_out:
        with open(json_out, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)
    return figures


if __name__ == "__main__":
    fire.Fire(run, serialize=lambda figures: json.dumps(figures, indent=2))

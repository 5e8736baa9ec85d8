"""Streaming inference: the bundle's inference over a folder of 200 demo images with corrupt and empty files predicts
every readable image, skips and reports the bad ones in failures.json (the batch is not stopped), and its memory does
not grow with the number of images. Plus SkipFailedDataset with DataLoader workers."""

import json
import os

import pytest
from monai_ext.data import SkipFailedDataset
from script_loader import load_script
from torch.utils.data import DataLoader


def test_stream_200_images_with_failures_bounded_memory(tmp_path):
    figures = load_script("benchmark_inference_stream").run(
        work_dir=str(tmp_path), n_images=200, image_size=64, n_corrupt=4
    )
    assert figures["images"] == 201  # 200 + one empty file
    assert figures["failed"] == 5 and figures["predicted"] == figures["masks_written"] == 196
    assert "zz_empty.png" in figures["failed_files"]
    with open(tmp_path / "predictions" / "failures.json") as f:
        report = json.load(f)
    assert report["num_failed"] == 5
    for failure in report["failures"]:
        assert failure["item"].endswith(".png") and failure["error"] == "ImageReadError"
        assert os.path.basename(failure["item"]) in failure["message"]
    first = figures["rss_samples_mib"][20]  # after 10 % of the items
    assert figures["rss_end_mib"] - first < 60, figures  # flat: nothing accumulates per image


def _square(item):
    if item % 3 == 0:
        raise ValueError(f"item {item} is bad")
    return item * item


@pytest.mark.parametrize("num_workers", [0, 2])
def test_skip_failed_dataset_collects_failures(tmp_path, num_workers):
    dataset = SkipFailedDataset(list(range(10)), transform=_square, failures_dir=str(tmp_path))
    dataset.reset()
    out = sorted(int(x) for batch in DataLoader(dataset, batch_size=2, num_workers=num_workers) for x in batch)
    assert out == [i * i for i in range(10) if i % 3]
    failures = dataset.all_failures()
    assert [f["index"] for f in failures] == [0, 3, 6, 9]
    assert failures[1] == {"index": 3, "item": "3", "error": "ValueError", "message": "item 3 is bad"}
    dataset.reset()
    assert dataset.all_failures() == []


@pytest.mark.parametrize("items, raises", [([1, 2, 3], False), ([3, 6], True)])
def test_failure_report_fails_a_run_that_produced_nothing(tmp_path, items, raises):
    from ignite.engine import Engine
    from monai_ext.handlers import FailureReport

    dataset = SkipFailedDataset(items, transform=_square)
    engine = Engine(lambda engine, batch: batch)
    FailureReport(dataset, output_dir=str(tmp_path)).attach(engine)
    if raises:
        with pytest.raises(RuntimeError, match=r"every one of the 2 item\(s\) failed \(first: 3: item 3 is bad\)"):
            engine.run(DataLoader(dataset, batch_size=1), max_epochs=1)
    else:
        engine.run(DataLoader(dataset, batch_size=1), max_epochs=1)  # one failure among results: logged, not raised
    with open(tmp_path / "failures.json") as f:
        assert json.load(f)["num_failed"] == (2 if raises else 1)


def test_item_progress_bar_counts_skipped_items_and_reaches_the_total():
    from ignite.engine import Engine, Events
    from monai_ext.handlers import ItemProgressBar

    dataset = SkipFailedDataset(list(range(1, 8)), transform=_square)  # 3 and 6 fail
    engine = Engine(lambda engine, batch: batch)
    progress = ItemProgressBar(total=7, dataset=dataset)
    progress.attach(engine)
    seen = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: seen.append(progress.done))
    engine.run(DataLoader(dataset, batch_size=1), max_epochs=1)
    assert seen == [1, 2, 4, 5, 7]  # each failure counted when the next item arrives
    assert progress.done == 7

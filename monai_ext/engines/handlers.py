"""Ignite handlers shared by the bundles: segmentation reports and overlay pictures from an evaluator's output, and
the training loop's throughput with the share of time spent waiting for data."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_ext.data.datalist import image_stem
from monai_ext.metrics import SegmentationReport
from monai_ext.utils.flags import ensure_flag
from monai_ext.utils.visualize import save_overlay_png

__all__ = [
    "SegmentationReportWriter",
    "OverlayWriter",
    "CheckedCheckpointLoader",
    "FailureReport",
    "ItemProgressBar",
    "LoaderWaitMonitor",
    "item_name",
    "item_spacing",
    "output_items",
]

logger = logging.getLogger(__name__)


def item_name(item: dict[str, Any], fallback: str) -> str:
    """A readable, file-system safe name for one decollated batch item: its ``name`` key, else the image file stem."""
    name = item.get("name")
    if not name:
        meta = getattr(item.get("image"), "meta", None) or item.get("image_meta_dict") or {}
        source = meta.get("filename_or_obj") if isinstance(meta, dict) else None
        if source:
            name = image_stem(str(source))
    name = str(name or fallback)
    slice_index = item.get("slice_index")
    if slice_index is not None:
        name = f"{name}_slice{int(slice_index):04d}"
    return name.replace(os.sep, "_")


def output_items(engine: Engine) -> list[dict[str, Any]]:
    """The decollated output items of the current iteration, each with the ``name``, ``text``, ``slice_index`` and
    ``spacing`` of its input item added (MONAI's engines keep only image, label and pred in the output)."""
    batch = engine.state.batch if isinstance(engine.state.batch, list) else []
    items = []
    for i, item in enumerate(engine.state.output):
        source = batch[i] if i < len(batch) and isinstance(batch[i], dict) else {}
        extra = {k: source[k] for k in ("name", "text", "slice_index", "spacing") if k in source and k not in item}
        items.append({**extra, **item})
    return items


def item_spacing(item: dict[str, Any]) -> list[float] | None:
    """The pixel spacing an item's pipeline recorded (:class:`monai_ext.data.RecordSpacingd`), None when it has none
    (distances are then in pixels of the evaluated image)."""
    spacing = item.get("spacing")
    return None if spacing is None else [float(v) for v in torch.as_tensor(spacing).flatten()]


def _as_index_map(pred: torch.Tensor | np.ndarray, spatial_shape: Sequence[int] | None = None) -> np.ndarray:
    """[C, H, W] one-hot/binary or [1, H, W] index map -> [H, W] integer index map, resampled (nearest) to
    ``spatial_shape`` when given (a prediction inverted to the original size next to the resized image)."""
    tensor = torch.as_tensor(pred).detach().cpu().float()
    index = tensor.argmax(0) if tensor.ndim == 3 and tensor.shape[0] > 1 else tensor.reshape(tensor.shape[-2:]).round()
    if spatial_shape is not None and tuple(index.shape) != tuple(spatial_shape):
        index = torch.nn.functional.interpolate(index[None, None], size=tuple(spatial_shape), mode="nearest")[0, 0]
    return index.numpy().astype(np.int64)


def _display(array: np.ndarray) -> np.ndarray:
    """MONAI arrays index space as (x, y); pictures are (row = y, column = x)."""
    return np.swapaxes(array, -1, -2)


class OverlayWriter:
    """Writes ``<output_dir>/<name>.png``: the image with prediction (red / per class) and ground truth (green) contours,
    and the report printed below, for the first ``max_images`` items an engine processes (all when None).

    Example::

        OverlayWriter(output_dir="eval/overlays", max_images=16).attach(evaluator)
    """

    def __init__(self, output_dir: str, max_images: int | None = 16, overwrite: bool = True, text_key: str = "text"):
        self.output_dir = output_dir
        self.max_images = max_images
        self.overwrite = ensure_flag(overwrite, "overwrite")
        self.text_key = text_key
        self._written = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self._written = 0

    def __call__(self, engine: Engine) -> None:
        os.makedirs(self.output_dir, exist_ok=True)
        for i, item in enumerate(output_items(engine)):
            if self.max_images is not None and self._written >= self.max_images:
                return
            name = item_name(item, fallback=f"item{engine.state.iteration:05d}_{i}")
            image = item["image"].detach().cpu().numpy()
            label = item.get("label")
            shape = image.shape[-2:]
            save_overlay_png(
                _display(image),
                mask=None if label is None else _display(_as_index_map(label, shape)),
                pred=_display(_as_index_map(item["pred"], shape)),
                text=item.get(self.text_key),
                path=os.path.join(self.output_dir, f"{name}.png"),
                overwrite=self.overwrite,
            )
            self._written += 1


class SegmentationReportWriter:
    """Accumulates per-image and dataset-level Dice, IoU, HD95 and NSD over an evaluator run and writes
    ``report.json``, ``per_image.csv`` and ``report.md`` into ``output_dir`` when the run completes.

    Args:
        output_dir: where the report goes.
        num_classes: foreground classes for binary (1) or number of classes including background for index maps.
        class_names: names used in the report.
        overwrite: replace an existing report (a re-evaluation), else refuse.

    Example::

        SegmentationReportWriter(output_dir="eval").attach(evaluator)
    """

    def __init__(
        self,
        output_dir: str,
        num_classes: int = 1,
        class_names: Sequence[str] | None = None,
        overwrite: bool = True,
        text_key: str = "text",
    ):
        self.output_dir = output_dir
        self.num_classes = num_classes
        self.class_names = class_names
        self.overwrite = ensure_flag(overwrite, "overwrite")
        self.text_key = text_key
        self.report: SegmentationReport | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._add)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _start(self, engine: Engine) -> None:
        self.report = SegmentationReport(num_classes=self.num_classes, class_names=self.class_names)

    def _add(self, engine: Engine) -> None:
        for i, item in enumerate(output_items(engine)):
            if item.get("label") is None:
                raise ValueError("SegmentationReportWriter needs labels; use OverlayWriter for unlabelled inference.")
            extra = {self.text_key: item[self.text_key]} if isinstance(item.get(self.text_key), str) else None
            self.report.add(
                item_name(item, fallback=f"item{engine.state.iteration:05d}_{i}"),
                _as_index_map(item["pred"]),
                _as_index_map(item["label"]),
                spacing=item_spacing(item),
                extra=extra,
            )

    def _write(self, engine: Engine) -> None:
        self.report.write(self.output_dir, overwrite=self.overwrite)
        logger.info("Segmentation report written to %s\n%s", self.output_dir, self.report.format_markdown())


class CheckedCheckpointLoader:
    """Load network weights at ``Events.STARTED`` with :func:`monai_ext.utils.io.load_state_dict_checked`.

    Unlike MONAI's ``CheckpointLoader`` a checkpoint of another network, a file that is not a state dict, a pickle of
    Python objects or a truncated download is refused with a :class:`~monai_ext.utils.io.CheckpointError` naming the
    file and the problem (read with ``weights_only=True``; DDP's ``module.`` prefix is removed).

    Args:
        load_path: checkpoint file (a state dict, or a dict holding one under ``model``/``state_dict``/...).
        network: the module to load into.
        strict: refuse missing/unexpected keys.
        expected_network: name a checkpoint's ``"network"`` entry must have (default: the network's class name).

    Example::

        CheckedCheckpointLoader("models/model.pt", network=net).attach(evaluator)
    """

    def __init__(
        self,
        load_path: str,
        network: torch.nn.Module,
        strict: bool = True,
        expected_network: str | None = None,
    ):
        self.load_path = load_path
        self.network = network
        self.strict = strict
        self.expected_network = expected_network

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        from monai_ext.utils.io import BUNDLE_WEIGHTS_HINT, load_state_dict_checked

        module = getattr(self.network, "module", self.network)  # DistributedDataParallel
        expected = self.expected_network or type(module).__name__
        load_state_dict_checked(
            module, self.load_path, strict=self.strict, expected_network=expected, missing_hint=BUNDLE_WEIGHTS_HINT
        )
        logger.info("Loaded weights from %s into %s", self.load_path, expected)


class FailureReport:
    """Write ``<output_dir>/failures.json`` and log a summary of the items a
    :class:`monai_ext.data.SkipFailedDataset` skipped, when the engine completes (also when nothing failed, so a
    finished run always says so).

    Args:
        dataset: the :class:`~monai_ext.data.SkipFailedDataset` the engine iterates.
        output_dir: where ``failures.json`` goes.
        overwrite: replace an existing ``failures.json``.
        raise_on_failure: after writing, raise ``RuntimeError`` when anything failed (a non-zero exit for scripts).
            When every item failed it is raised anyway: a run that produced nothing must not look like a success.

    Example::

        FailureReport(dataset, output_dir="predictions").attach(evaluator)
    """

    def __init__(self, dataset: Any, output_dir: str, overwrite: bool = False, raise_on_failure: bool = False):
        self.dataset = dataset
        self.output_dir = output_dir
        self.overwrite = ensure_flag(overwrite, "overwrite")
        self.raise_on_failure = ensure_flag(raise_on_failure, "raise_on_failure")
        self.failures: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _start(self, engine: Engine) -> None:
        path = os.path.join(self.output_dir, "failures.json")
        if not self.overwrite and os.path.lexists(path):
            raise FileExistsError(f"Output '{path}' already exists; set overwrite=True to replace it")
        self.dataset.reset()

    def _write(self, engine: Engine) -> None:
        from monai_ext.utils.io import atomic_write_json

        self.failures = self.dataset.all_failures()
        processed = engine.state.iteration * (engine.state.batch_size if hasattr(engine.state, "batch_size") else 1)
        atomic_write_json(
            os.path.join(self.output_dir, "failures.json"),
            {"num_failed": len(self.failures), "failures": self.failures},
            overwrite=self.overwrite,
        )
        if self.failures:
            lines = "\n".join(f"  {f['item']}: {f['error']}: {f['message']}" for f in self.failures[:50])
            more = f"\n  ... and {len(self.failures) - 50} more" if len(self.failures) > 50 else ""
            logger.warning(
                "%d item(s) failed and were skipped (details in %s):\n%s%s",
                len(self.failures),
                os.path.join(self.output_dir, "failures.json"),
                lines,
                more,
            )
        else:
            logger.info("All items processed (%d iterations), no failure.", processed)
        nothing_done = engine.state.iteration == 0
        if self.failures and (self.raise_on_failure or nothing_done):
            first = self.failures[0]
            every = "every one of the " if nothing_done else ""
            raise RuntimeError(
                f"{every}{len(self.failures)} item(s) failed (first: {first['item']}: {first['message']}); see "
                f"{self.output_dir}/failures.json"
            )


class ItemProgressBar:
    """A progress bar over the items of a run whose loader has no length, such as a
    :class:`~monai_ext.data.SkipFailedDataset` (ignite's ``ProgressBar`` can only show ``[n/?]`` there).

    Skipped items count as done, so the bar reaches ``total`` when the run ends.

    Args:
        total: number of items the run will meet (the datalist's length).
        dataset: the skipping dataset, whose ``failures`` are counted (main process; ``num_workers=0``).
        desc: the bar's label.

    Example::

        ItemProgressBar(total=len(records), dataset=dataset).attach(evaluator)
    """

    def __init__(self, total: int, dataset: Any = None, desc: str = "images"):
        self.total = int(total)
        self.dataset = dataset
        self.desc = desc
        self.done = 0
        self._bar: Any = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._update)
        engine.add_event_handler(Events.COMPLETED, self._close)

    def _start(self, engine: Engine) -> None:
        from tqdm import tqdm

        self.done = 0
        self._bar = tqdm(total=self.total, desc=self.desc, unit="image", leave=False)

    def _update(self, engine: Engine) -> None:
        batch_size = getattr(engine.state.dataloader, "batch_size", None) or 1
        skipped = len(getattr(self.dataset, "failures", []) or [])
        self.done = min(self.total, engine.state.iteration * batch_size + skipped)
        if self._bar is not None:
            self._bar.update(self.done - self._bar.n)

    def _close(self, engine: Engine) -> None:
        self._update(engine)
        if self._bar is not None:
            self._bar.close()


class LoaderWaitMonitor:
    """Log each epoch's images per second and the share of the epoch spent waiting for the DataLoader.

    A share near 0 means the network is the bottleneck; a large share means the data pipeline is (raise
    ``num_workers``, keep ``cache_rate`` at 1). The epoch is timed from ``EPOCH_STARTED`` to its last
    ``ITERATION_COMPLETED``, so epoch-end work such as validation is not counted; waiting is the time between
    ``GET_BATCH_STARTED`` and ``GET_BATCH_COMPLETED``. The first epoch includes DataLoader worker start-up. Under
    ``torchrun`` figures are per process and only rank 0 logs them.

    Every epoch's figures are kept in ``epochs`` as ``{"epoch", "images", "seconds", "images_per_s", "wait_seconds",
    "wait_fraction"}``.

    Args:
        image_key: batch key whose first dimension counts the images.
        log: write one line per epoch to the ``monai_ext.engines.handlers`` logger.

    Example::

        monitor = LoaderWaitMonitor()
        monitor.attach(trainer)
        trainer.run()
        monitor.epochs[-1]["wait_fraction"]  # e.g. 0.03: the loader keeps up
    """

    def __init__(self, image_key: str = "image", log: bool = True):
        self.image_key = image_key
        self.log = log
        self.epochs: list[dict[str, float]] = []
        self._epoch_start = self._batch_start = self._last_iteration = 0.0
        self._wait = 0.0
        self._images = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._start_epoch)
        engine.add_event_handler(Events.GET_BATCH_STARTED, self._start_batch)
        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self._got_batch)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._end_iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._end_epoch)

    def _start_epoch(self, engine: Engine) -> None:
        self._epoch_start = self._last_iteration = time.perf_counter()
        self._wait = 0.0
        self._images = 0

    def _start_batch(self, engine: Engine) -> None:
        self._batch_start = time.perf_counter()

    def _got_batch(self, engine: Engine) -> None:
        self._wait += time.perf_counter() - self._batch_start
        batch = engine.state.batch
        images = batch.get(self.image_key) if isinstance(batch, dict) else None
        self._images += len(images) if images is not None else 1

    def _end_iteration(self, engine: Engine) -> None:
        self._last_iteration = time.perf_counter()

    def _end_epoch(self, engine: Engine) -> None:
        seconds = max(self._last_iteration - self._epoch_start, 1e-9)
        record = {"epoch": engine.state.epoch, "images": self._images, "seconds": seconds,
                  "images_per_s": self._images / seconds, "wait_seconds": self._wait,
                  "wait_fraction": min(self._wait / seconds, 1.0)}
        self.epochs.append(record)
        if self.log and (not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0):
            logger.info("Epoch %d: %.1f images/s, %.0f%% of the time waiting for data (%d images in %.1f s)",
                        record["epoch"], record["images_per_s"], 100 * record["wait_fraction"], record["images"],
                        seconds)

"""Ignite handlers of the bundles' engines: reports, overlays, checkpoints, reproducible epochs, progress, loader wait."""

from .checkpoint_loader import CheckedCheckpointLoader
from .epoch_seeder import EpochSeeder, epoch_seed
from .failure_report import FailureReport
from .loader_monitor import LoaderWaitMonitor
from .overlay_writer import OverlayWriter
from .progress import ItemProgressBar
from .report_writer import SegmentationReportWriter
from .trainer_checkpoint import TrainerCheckpoint
from .utils import as_index_map, item_name, item_spacing, output_items, picture_axes

__all__ = [
    "CheckedCheckpointLoader",
    "epoch_seed",
    "EpochSeeder",
    "FailureReport",
    "as_index_map",
    "item_name",
    "item_spacing",
    "ItemProgressBar",
    "LoaderWaitMonitor",
    "output_items",
    "OverlayWriter",
    "picture_axes",
    "SegmentationReportWriter",
    "TrainerCheckpoint",
]

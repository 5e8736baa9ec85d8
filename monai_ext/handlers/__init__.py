"""Ignite handlers of the bundles' engines: reports (per image, per volume), label-map checks, overlays, checkpoints,
reproducible epochs, progress, loader wait, text-cache figures."""

from .checkpoint_loader import CheckedCheckpointLoader
from .epoch_seeder import EpochSeeder, epoch_seed
from .failure_report import FailureReport
from .label_map_check import LabelMapCheck
from .loader_monitor import LoaderWaitMonitor
from .overlay_writer import OverlayWriter
from .progress import ItemProgressBar
from .report_writer import SegmentationReportWriter
from .text_cache_stats import TextCacheStatsHandler, text_caches
from .trainer_checkpoint import TrainerCheckpoint
from .utils import as_index_map, item_name, item_spacing, output_items, picture_axes
from .volume_report_writer import VolumeReportWriter

__all__ = [
    "CheckedCheckpointLoader",
    "epoch_seed",
    "EpochSeeder",
    "FailureReport",
    "as_index_map",
    "item_name",
    "item_spacing",
    "ItemProgressBar",
    "LabelMapCheck",
    "LoaderWaitMonitor",
    "output_items",
    "OverlayWriter",
    "picture_axes",
    "SegmentationReportWriter",
    "TextCacheStatsHandler",
    "text_caches",
    "TrainerCheckpoint",
    "VolumeReportWriter",
]

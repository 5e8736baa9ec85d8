"""Training and evaluation machinery shared by the bundles."""

from .bundle_runner import bundle_run_command, run_bundle
from .handlers import (
    CheckedCheckpointLoader,
    FailureReport,
    ItemProgressBar,
    LoaderWaitMonitor,
    OverlayWriter,
    SegmentationReportWriter,
    item_name,
)
from .resume import EpochSeeder, TrainerCheckpoint, epoch_seed
from .predict import BundlePredictor, PredictionResult, PredictionSummary, bundle_parser, load_bundle_network, predict_csv

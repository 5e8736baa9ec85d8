"""Segmentation metrics and reports: per image, and per volume for slice-wise predictions."""

from .segmentation_report import UNITS, SegmentationReport
from .volume_report import SliceVolumeReport

__all__ = ["SegmentationReport", "SliceVolumeReport", "UNITS"]

"""Segmentation metrics and reports."""

from .segmentation_report import SegmentationReport

__all__ = ["SegmentationReport"]

"""Segmentation metrics and reports."""

from .segmentation_report import SegmentationReport

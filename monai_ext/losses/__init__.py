"""Segmentation losses on logits, and the wrapper adding a network's own auxiliary (alignment) term."""

from .alignment import PixelTextAlignmentLoss, downsample_label_majority
from .auxiliary import WithAuxiliaryLoss
from .dice_bce import DiceBCELoss

__all__ = ["DiceBCELoss", "PixelTextAlignmentLoss", "WithAuxiliaryLoss", "downsample_label_majority"]

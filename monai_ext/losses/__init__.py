"""Segmentation losses on logits, and the wrapper adding a network's own auxiliary (alignment) term."""

from .auxiliary import WithAuxiliaryLoss
from .dice_bce import DiceBCELoss

# The pixel-text alignment loss (alignment.py, PixelTextAlignmentLoss) is exported here by the lead when merged.
__all__ = ["DiceBCELoss", "WithAuxiliaryLoss"]

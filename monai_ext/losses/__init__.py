"""Segmentation losses on logits, auxiliary (alignment) losses on other network outputs, and the loss combining them."""

from .alignment import PixelTextAlignmentLoss, downsample_label_majority
from .auxiliary_output import AuxiliaryOutputLoss
from .dice_bce import DiceBCELoss
from .similarity_map import SimilarityMapLoss

__all__ = [
    "AuxiliaryOutputLoss",
    "DiceBCELoss",
    "PixelTextAlignmentLoss",
    "SimilarityMapLoss",
    "downsample_label_majority",
]

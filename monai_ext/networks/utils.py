"""Small helpers shared by the networks."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["count_parameters", "match_batch"]


def count_parameters(module: nn.Module) -> dict[str, int]:
    """Trainable and total parameter counts of ``module`` (frozen CLIP weights count in the total only)."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total}


def match_batch(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    """One report for a batch of images (e.g. all slices of a CT volume under a slice inferer) is broadcast over the
    batch; otherwise there must be one per image."""
    if tensor.shape[0] == batch:
        return tensor
    if tensor.shape[0] == 1:
        return tensor.expand([batch] + list(tensor.shape[1:]))
    raise ValueError(f"{tensor.shape[0]} reports for {batch} images: give one report per image or one for all.")

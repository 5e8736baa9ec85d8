"""Small helpers shared by the networks."""

from __future__ import annotations

import torch.nn as nn

__all__ = ["count_parameters"]


def count_parameters(module: nn.Module) -> dict[str, int]:
    """Trainable and total parameter counts of ``module`` (frozen CLIP weights count in the total only)."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total}

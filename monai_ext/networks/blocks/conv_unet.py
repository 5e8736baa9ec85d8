"""Convolutional U-Net parts shared by the networks: a residual encoder and an upsample-and-concatenate block."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit

__all__ = ["ResidualEncoder", "SkipUpBlock"]


class ResidualEncoder(nn.Module):
    """Light 2D CNN: a full-resolution stem and one stride-2 residual stage per further width.

    Args:
        in_channels: image channels.
        channels: widths at full, 1/2, 1/4, ... resolution (one stage per entry after the first).

    Inputs:
        x: ``[B, in_channels, H, W]``.

    Returns:
        the feature maps of every resolution, full first: ``[[B, channels[0], H, W], [B, channels[1], H/2, W/2], ...]``.

    Example::

        features = ResidualEncoder(1, (16, 32, 64))(torch.rand(2, 1, 64, 64))  # shapes 64, 32, 16
    """

    def __init__(self, in_channels: int, channels: Sequence[int]):
        super().__init__()
        self.stem = Convolution(2, in_channels, channels[0], kernel_size=3, norm="instance", act="relu")
        stages = []
        prev = channels[0]
        for ch in channels[1:]:
            stages.append(ResidualUnit(2, prev, ch, strides=2, kernel_size=3, subunits=1, norm="instance", act="relu"))
            prev = ch
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        return feats


class SkipUpBlock(nn.Module):
    """Bilinear upsampling to the skip's size, concatenation with the skip, two 3x3 conv layers (instance norm, ReLU).

    Inputs:
        x: ``[B, in_channels, h, w]``; skip: ``[B, skip_channels, H, W]``.

    Returns:
        ``[B, out_channels, H, W]``.

    Example::

        up = SkipUpBlock(64, 32, 32)
        y = up(torch.rand(2, 64, 16, 16), torch.rand(2, 32, 32, 32))  # [2, 32, 32, 32]
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Sequential(
            Convolution(2, in_channels + skip_channels, out_channels, kernel_size=3, norm="instance", act="relu"),
            Convolution(2, out_channels, out_channels, kernel_size=3, norm="instance", act="relu"),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))

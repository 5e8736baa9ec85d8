"""Text-Guided Pixel Decoder of VLSA-Net (arXiv 2509.08570): class text embeddings steer a top-down pixel decoder."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution

__all__ = ["TextCrossAttention", "TextGuidedPixelDecoder"]


class TextCrossAttention(nn.Module):
    """Pixels attend to class text embeddings (queries = pixels, keys/values = projected text), pre-norm residual.

    The text side is only read, never updated: it carries the domain-invariant class knowledge, so it is kept
    independent of the (domain-dependent) image.

    Args:
        channels: pixel feature channels.
        text_dim: size of the text embeddings.
        num_heads: attention heads (must divide ``channels``).
        mlp_ratio: hidden width of the feed-forward block relative to ``channels``.

    Inputs:
        pixels ``[B, C, *spatial]`` and text ``[B, K, text_dim]``.

    Returns:
        Pixels ``[B, C, *spatial]`` after attention and feed-forward residual updates.
    """

    def __init__(self, channels: int, text_dim: int, num_heads: int = 4, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide the decoder channels ({channels}).")
        self.text_projection = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, channels))
        self.pixel_norm = nn.LayerNorm(channels)
        self.attention = nn.MultiheadAttention(channels, num_heads, batch_first=True)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.LayerNorm(channels), nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels)
        )

    def forward(self, pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        shape = pixels.shape
        tokens = pixels.flatten(2).transpose(1, 2)
        keys = self.text_projection(text.to(tokens.dtype))
        attended, _ = self.attention(self.pixel_norm(tokens), keys, keys, need_weights=False)
        tokens = tokens + attended
        tokens = tokens + self.mlp(tokens)
        return tokens.transpose(1, 2).reshape(shape)


class TextGuidedPixelDecoder(nn.Module):
    """Top-down (FPN-like) decoder whose deepest level attends to class text and whose logits include pixel-text cosine.

    Design (the paper gives no code; these are our choices):

    * every input level gets a lateral 1x1 conv to ``channels``;
    * the deepest level (typically already EM-aggregated) attends to the class text embeddings
      (:class:`TextCrossAttention`);
    * going from deep to shallow, the running map is bilinearly resized to the next level, added to its lateral and
      smoothed by a 3x3 conv (levels may share a resolution, e.g. several ViT depths at 1/16);
    * at the finest level, ``logits = conv_head(x) + exp(logit_scale) * similarity`` with
      ``similarity[b, k, i, j] = cos(x[b, :, i, j], W t_k)``: a conv head plus the cosine between the decoder's pixel
      features and each class embedding projected to the decoder width by a learned linear layer ``W``, scaled by a
      learned temperature, so the text directly shapes every class map; logits are resized to ``output_size``.
      Projecting the ``K`` class embeddings rather than every pixel to the text width keeps the term at ``K``
      channels per pixel: no ``[B, D, H_0, W_0]`` map is made (with ViT-B/16's ``D = 512``, at batch 8 and 224 px,
      such maps made the decoder's training step peak at 1.6 GiB of tensors instead of 0.3 GiB). The finest level is
      kept: at the decoder width the term is cheap there (5 MFLOP of the decoder's 2.5 GFLOP per 224 px image;
      forward and backward at batch 8 about 40 ms on one CPU thread, 12 ms at 1/4), and 1/4 would halve the
      resolution at which the text shapes the class maps and the alignment loss supervises them. The similarity
      map is returned, so that a loss reuses it (:class:`monai_ext.losses.alignment.PixelTextAlignmentLoss`)
      instead of computing it again.

    The forward pass reads no tensor value on the host (only shapes), so it never waits for the device.

    Args:
        in_channels: channels of each input level, ordered shallow/fine to deep/coarse.
        text_dim: size ``D`` of the class text embeddings.
        num_classes: number of classes ``K`` (must match the text embeddings given to ``forward``).
        channels: decoder width.
        num_heads: heads of the text cross-attention.
        norm: normalisation of the conv blocks (instance norm by default: it removes per-image intensity statistics,
            which differ across domains).
        logit_scale_init: initial scale of the cosine term (learned in log space, clamped to at most 100).

    Inputs:
        features: list of ``[B, in_channels[i], H_i, W_i]`` maps, shallow to deep.
        class_embeddings: ``[K, D]`` shared by the batch or ``[B, K, D]``.
        output_size: spatial size of the returned logits (default: the finest level's size).

    Returns:
        ``(logits [B, K, *output_size], similarity [B, K, H_0, W_0])``; ``similarity`` is the cosine (in [-1, 1],
        unscaled) between the finest level's pixels and the projected class embeddings, the term the logits add.

    Example::

        decoder = TextGuidedPixelDecoder(in_channels=(32, 64, 64), text_dim=512, num_classes=3)
        feats = [torch.rand(2, 32, 56, 56), torch.rand(2, 64, 28, 28), torch.rand(2, 64, 14, 14)]
        logits, similarity = decoder(feats, torch.randn(3, 512), output_size=(224, 224))
        # logits [2, 3, 224, 224], similarity [2, 3, 56, 56]
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        text_dim: int,
        num_classes: int,
        channels: int = 64,
        num_heads: int = 4,
        norm: str | tuple = "instance",
        logit_scale_init: float = 10.0,
    ) -> None:
        super().__init__()
        if not in_channels:
            raise ValueError("TextGuidedPixelDecoder needs at least one input level.")
        if num_classes < 1 or text_dim < 1 or logit_scale_init <= 0:
            raise ValueError(
                f"num_classes and text_dim must be >= 1 and logit_scale_init > 0, got {num_classes}, {text_dim}, "
                f"{logit_scale_init}."
            )
        self.in_channels = list(in_channels)
        self.num_classes = num_classes
        self.text_dim = text_dim
        self.laterals = nn.ModuleList(
            [Convolution(2, c, channels, kernel_size=1, norm=norm, act="relu") for c in self.in_channels]
        )
        self.text_attention = TextCrossAttention(channels, text_dim, num_heads)
        self.smooth = nn.ModuleList(
            [Convolution(2, channels, channels, kernel_size=3, norm=norm, act="relu") for _ in self.in_channels[:-1]]
        )
        self.conv_head = nn.Sequential(
            Convolution(2, channels, channels, kernel_size=3, norm=norm, act="relu"),
            nn.Conv2d(channels, num_classes, kernel_size=1),
        )
        self.class_projection = nn.Linear(text_dim, channels)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(logit_scale_init)))

    def _check_inputs(self, features: list[torch.Tensor], class_embeddings: torch.Tensor) -> torch.Tensor:
        if len(features) != len(self.in_channels):
            raise ValueError(f"Expected {len(self.in_channels)} feature levels, got {len(features)}.")
        for i, feat in enumerate(features):
            if feat.ndim != 4 or feat.shape[1] != self.in_channels[i]:
                raise ValueError(
                    f"Feature level {i} must be [B, {self.in_channels[i]}, H, W], got shape {list(feat.shape)}."
                )
        batch = features[0].shape[0]
        if class_embeddings.ndim == 2:
            class_embeddings = class_embeddings.unsqueeze(0).expand(batch, -1, -1)
        if class_embeddings.ndim != 3 or list(class_embeddings.shape) != [batch, self.num_classes, self.text_dim]:
            raise ValueError(
                f"class_embeddings must be [{self.num_classes}, {self.text_dim}] or "
                f"[{batch}, {self.num_classes}, {self.text_dim}], got {list(class_embeddings.shape)}."
            )
        return class_embeddings

    def forward(
        self, features: list[torch.Tensor], class_embeddings: torch.Tensor, output_size: list[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        text = self._check_inputs(features, class_embeddings)
        laterals: list[torch.Tensor] = []
        for level, project in enumerate(self.laterals):
            laterals.append(project(features[level]))
        x = self.text_attention(laterals[-1], text)
        # Deep to shallow. TorchScript indexes a ModuleList by constants only, and calls the blocks of a reversed one
        # by their forward only.
        for step, smooth in enumerate(self.smooth[::-1]):
            lateral = laterals[len(laterals) - 2 - step]
            x = F.interpolate(x, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            x = smooth.forward(lateral + x)
        classes = F.normalize(self.class_projection(text.to(x.dtype)), dim=2)
        # Dividing the dot products by the pixel norms equals normalising the pixels first, without a normalised copy
        # of the whole [B, C, H_0, W_0] map (it would be kept for the backward pass).
        pixel_norms = torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-12)
        similarity = torch.einsum("bchw,bkc->bkhw", x, classes) / pixel_norms
        logits = self.conv_head(x) + self.logit_scale.clamp(max=math.log(100.0)).exp() * similarity
        if output_size is not None and list(logits.shape[-2:]) != list(output_size):
            logits = F.interpolate(logits, size=list(output_size), mode="bilinear", align_corners=False)
        return logits, similarity

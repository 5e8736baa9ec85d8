"""GuideDecoder-like baseline: a CNN U-Net whose decoder reads the report (Zhong et al., MICCAI 2023).

Zhong et al., "Ariadne's Thread: Using Text Prompts to Improve Segmentation of Infected Areas from Chest X-ray
images" (MICCAI 2023) guide a U-shaped decoder by text: before each decoder stage upsamples and concatenates its
encoder skip, a "GuideDecoder" layer lets the visual tokens attend to each other (self-attention) and then to the
projected text tokens (cross-attention, text as key/value, padding masked), each with a residual connection and a
LayerNorm. This module follows that description; it is a peer baseline for TGC-Net at a similar budget, so some parts
are ours:

* Image encoder: a trainable CNN (MONAI ``Convolution`` stem and stride-2 ``ResidualUnit`` stages, instance norm, down
  to 1/16) instead of the paper's pretrained ConvNeXt, so that the comparison with an image-only ``BasicUNet`` of the
  same widths isolates what the text adds.
* Text encoder: the frozen CLIP text tower (:class:`monai_ext.networks.blocks.ClipTextEncoder`) that TGC-Net uses,
  instead of CXR-BERT, so that both networks read the same text features. Its projected per-token features are mapped
  to each guided stage's width by a trainable linear layer; the CLIP weights are the only frozen parameters.
* Guide layers run at the 1/16, 1/8 and 1/4 stages only. Self-attention is quadratic in the number of pixels: at 1/2
  of a 224 x 224 image it would have 12,544 tokens (16x the cost at 1/4), so the 1/2 and full-resolution stages are
  plain convolutional up-blocks.
* Layers are pre-norm (LayerNorm before each attention, residual around it), and a fixed 2D sinusoidal position code is
  added to the visual queries and keys: attention alone ignores where a pixel is, while reports name places ("lower
  left lung"). The CLIP token features already carry their positions.

Inputs:
    images: ``[B, in_channels, H, W]`` float; any H, W (no patch-size constraint).
    text_tokens: ``[B, L]`` CLIP tokens of the report (``[1, L]`` is shared by all images), or None for
        ``default_prompt``.
    knowledge_tokens: accepted and ignored, so that the bundle's ``prepare_batch`` (which passes TGC-Net's knowledge
        sentences) works unchanged; the paper's method reads the report alone.

Outputs:
    ``[B, 1, H, W]`` segmentation logits, in training and in eval mode (no auxiliary outputs).

Example::

    net = GuideDecoderNet(clip_model_name=TINY_CLIP_NAME, in_channels=1)
    tokens = get_clip_tokenizer(TINY_CLIP_NAME)(["Lower left lung infection."])
    logits = net(torch.rand(2, 1, 224, 224), tokens)  # [2, 1, 224, 224]; one report for both images
    loss = DiceBCELoss()(logits, label)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from monai_ext.clip import create_clip, get_clip_tokenizer
from monai_ext.networks.blocks import ClipTextEncoder, ResidualEncoder, SkipUpBlock
from monai_ext.networks.utils import count_parameters, match_batch

__all__ = ["GuideDecoderNet"]

# Decoder stages (counted from the deepest, 1/16) that get a guide layer: 1/16, 1/8 and 1/4.
_NUM_GUIDED_STAGES = 3


def _sinusoidal_positions(height: int, width: int, channels: int, device: torch.device) -> torch.Tensor:
    """Fixed 2D sine/cosine position code ``[height * width, channels]``: half the channels encode y, half x."""
    quarter = channels // 4
    freq = torch.exp(torch.arange(quarter, device=device, dtype=torch.float32) * (-math.log(10000.0) / quarter))
    y = torch.arange(height, device=device, dtype=torch.float32)[:, None] * freq  # [H, C/4]
    x = torch.arange(width, device=device, dtype=torch.float32)[:, None] * freq  # [W, C/4]
    y = torch.cat([y.sin(), y.cos()], dim=1)[:, None, :].expand(height, width, -1)
    x = torch.cat([x.sin(), x.cos()], dim=1)[None, :, :].expand(height, width, -1)
    return torch.cat([y, x], dim=-1).reshape(height * width, channels)


class _GuideLayer(nn.Module):
    """Visual tokens: self-attention, then cross-attention to the projected text tokens (pre-norm, residual)."""

    def __init__(self, channels: int, text_dim: int, heads: int):
        super().__init__()
        self.text_projection = nn.Linear(text_dim, channels)
        self.self_norm = nn.LayerNorm(channels)
        self.self_attention = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.cross_norm = nn.LayerNorm(channels)
        self.text_norm = nn.LayerNorm(channels)
        self.cross_attention = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: torch.Tensor, text: torch.Tensor, text_pad: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W], text [B, T, text_dim], text_pad [B, T] (True = padding) -> [B, C, H, W]."""
        batch, channels, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        pos = _sinusoidal_positions(height, width, channels, x.device).to(tokens.dtype)
        # Positions go into queries and keys only, so the values (what is added to the features) stay content.
        v = self.self_norm(tokens)
        qk = v + pos
        tokens = tokens + self.self_attention(qk, qk, v, need_weights=False)[0]
        text = self.text_norm(self.text_projection(text.to(tokens.dtype)))
        q = self.cross_norm(tokens) + pos
        # key_padding_mask: the pad positions after end-of-text must not steer the mask.
        tokens = tokens + self.cross_attention(q, text, text, key_padding_mask=text_pad, need_weights=False)[0]
        return tokens.transpose(1, 2).reshape(batch, channels, height, width)


class GuideDecoderNet(nn.Module):
    """CNN encoder, frozen CLIP text encoder, U-Net decoder with text guide layers at 1/16, 1/8 and 1/4.

    Args:
        clip_model_name: open_clip model of the text encoder (``"ViT-B-16"`` as TGC-Net, ``TINY_CLIP_NAME`` for
            demos/tests); only its text tower is kept.
        clip_pretrained: open_clip pretrained tag looked up in the local cache only (e.g. ``"openai"``).
        clip_checkpoint: local CLIP weights file; takes precedence over ``clip_pretrained``.
        in_channels: image channels (1 for grayscale X-ray/CT, 3 for RGB).
        channels: encoder widths at full, 1/2, 1/4, 1/8 and 1/16 resolution; the decoder mirrors them. The guided
            widths (the last three) must be multiples of 4 (position code) and of ``attention_heads``.
        attention_heads: heads of the self- and cross-attention of every guide layer.
        default_prompt: report used when ``forward`` gets no text (image-only tools such as ``verify_net_in_out``).
        text_cache_max_bytes: bound in bytes of the frozen text encoder's cache (see :class:`TGCNet`).

    See the module docstring for inputs, outputs and an example.
    """

    def __init__(
        self,
        clip_model_name: str = "ViT-B-16",
        clip_pretrained: str | None = None,
        clip_checkpoint: str | None = None,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        attention_heads: int = 4,
        default_prompt: str = "Pulmonary infection in the lungs.",
        text_cache_max_bytes: int | None = 2**30,
    ):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) != 5:
            raise ValueError(f"channels needs 5 entries (full, 1/2, 1/4, 1/8, 1/16 resolution), got {channels}.")
        guided = channels[-_NUM_GUIDED_STAGES:]
        if any(c % 4 or c % attention_heads for c in guided):
            raise ValueError(f"Guided widths {guided} must be multiples of 4 and of attention_heads={attention_heads}.")
        self.clip_model_name = clip_model_name
        self.in_channels = in_channels

        # Trainable CNN encoder: full-resolution stem, then stride-2 residual stages down to 1/16.
        self.encoder = ResidualEncoder(in_channels, channels)

        # Frozen CLIP text encoder (the visual tower of the CLIP model is not kept).
        clip = create_clip(clip_model_name, pretrained=clip_pretrained, checkpoint=clip_checkpoint)
        self.text_encoder = ClipTextEncoder(clip, frozen=True, cache=True, cache_max_bytes=text_cache_max_bytes)

        # Decoder, deepest first: stage i reads the 1/2**(4-i) map, is guided for i < 3, then goes up to the next skip.
        deep_to_fine = channels[::-1]
        self.guide_layers = nn.ModuleList(
            [_GuideLayer(c, self.text_encoder.embed_dim, attention_heads) for c in guided[::-1]]
        )
        self.up_blocks = nn.ModuleList(
            [SkipUpBlock(c_in, c_skip, c_skip) for c_in, c_skip in zip(deep_to_fine[:-1], deep_to_fine[1:])]
        )
        self.head = nn.Conv2d(channels[0], 1, kernel_size=1)

        tokens = get_clip_tokenizer(clip_model_name)([default_prompt])
        self.register_buffer("default_text_tokens", tokens.long(), persistent=False)

    def count_parameters(self) -> dict[str, int]:
        """Trainable and total parameter counts (the frozen CLIP text encoder counts in the total only)."""
        return count_parameters(self)

    def forward(
        self,
        images: torch.Tensor,
        text_tokens: torch.Tensor | None = None,
        knowledge_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        del knowledge_tokens  # accepted for TGC-Net's prepare_batch; this method reads the report only
        if text_tokens is None:
            text_tokens = self.default_text_tokens
        elif text_tokens.dim() == 1:
            text_tokens = text_tokens.unsqueeze(0)
        # Encode each report once and broadcast its features, rather than encoding B copies of one report.
        text, _, text_pad = self.text_encoder(text_tokens.long())
        text = match_batch(text, images.shape[0])
        text_pad = match_batch(text_pad, images.shape[0])

        skips = self.encoder(images)  # full, 1/2, 1/4, 1/8, 1/16

        x = skips[-1]
        for i, up in enumerate(self.up_blocks):
            if i < len(self.guide_layers):
                x = self.guide_layers[i](x, text, text_pad)
            x = up(x, skips[-2 - i])
        return self.head(x)

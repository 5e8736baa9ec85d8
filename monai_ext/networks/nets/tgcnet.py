"""TGC-Net: CLIP-based text-guided segmentation (Lin et al., arXiv 2512.21135).

The paper describes three parts around a frozen CLIP; its code is not public, so the concrete design below is ours and is
written down in ``bundles/tgcnet/docs/README.md``:

* Semantic-Structural Synergy Encoder (SSE): frozen CLIP ViT features from four depths, fused with a light trainable
  CNN branch at 1/2, 1/4, 1/8 and 1/16 of the input resolution (shallow ViT depths feed the finer scales).
* Domain-Augmented Text Encoder (DATE): the frozen CLIP text encoder reads the report and, separately, up to K
  knowledge sentences matched from an LLM-written knowledge file (each sentence has its own 77-token budget instead of
  crowding the report out). Trainable parts: a residual adapter on the token features and M learnable prompt tokens
  appended to the text sequence.
* Vision-Language Calibration Module (VLCM): pixel embeddings in CLIP space, first modulated by the pooled report
  embedding (FiLM: the sentence as a whole), attend to the text sequence (token-to-pixel cross-attention), the text
  tokens are in turn calibrated by the pixels, and a learned similarity map between pixels and the calibrated sentence
  embedding gates the decoder features at every scale. The similarity map doubles as a coarse mask: in training the
  network returns it for the auxiliary image-text alignment loss (:class:`monai_ext.losses.SimilarityMapLoss`).
* A U-Net style decoder upsamples to a full-resolution single-channel logit map; a few text-conditioned guidance
  channels, computed from the calibrated pixels at 1/16, are given to every finer scale beside its skip.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai_ext.clip import create_clip, get_clip_tokenizer
from monai_ext.networks.blocks.clip_encoders import ClipImageEncoder, ClipTextEncoder
from monai_ext.networks.blocks.conv_unet import ResidualEncoder, SkipUpBlock
from monai_ext.networks.utils import count_parameters, match_batch

__all__ = ["TGCNet"]


class _TextAdapter(nn.Module):
    """Residual bottleneck adapter on frozen text features; starts as identity (zero-initialised up-projection)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(F.gelu(self.down(x)))


class _CalibrationModule(nn.Module):
    """VLCM: bidirectional pixel-text cross-attention and a learned pixel-text similarity map (logits)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.pixel_norm = nn.LayerNorm(dim)
        self.text_norm = nn.LayerNorm(dim)
        self.pixel_from_text = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.text_from_pixel = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.pixel_mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))
        self.logit_scale = nn.Parameter(torch.tensor(10.0))
        self.logit_bias = nn.Parameter(torch.tensor(-2.0))

    def forward(
        self, pixels: torch.Tensor, text: torch.Tensor, text_pad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """pixels [B, N, D], text [B, T, D], text_pad [B, T] (True = padding) -> calibrated pixels, similarity logits [B, N]."""
        t = self.text_norm(text)
        attended, _ = self.pixel_from_text(self.pixel_norm(pixels), t, t, key_padding_mask=text_pad)
        pixels = pixels + attended
        pixels = pixels + self.pixel_mlp(pixels)
        p = self.pixel_norm(pixels)
        calibrated_text, _ = self.text_from_pixel(t, p, p)
        calibrated_text = text + calibrated_text
        keep = (~text_pad).unsqueeze(-1).to(calibrated_text.dtype)
        sentence = (calibrated_text * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        similarity = torch.einsum("bnd,bd->bn", F.normalize(pixels, dim=-1), F.normalize(sentence, dim=-1))
        return pixels, similarity * self.logit_scale + self.logit_bias


def _resized(maps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``maps`` resampled (bilinear) to the spatial size of ``like``."""
    return F.interpolate(maps, size=like.shape[-2:], mode="bilinear", align_corners=False)


class TGCNet(nn.Module):
    """Text-guided segmentation network with a frozen CLIP and few trainable parameters.

    Args:
        clip_model_name: open_clip model name (``"ViT-B-16"`` for the paper setting, ``TINY_CLIP_NAME`` for demos/tests).
        clip_pretrained: open_clip pretrained tag looked up in the local cache only (e.g. ``"openai"``).
        clip_checkpoint: local CLIP weights file; takes precedence over ``clip_pretrained``.
        in_channels: image channels (1 for grayscale X-ray/CT, 3 for RGB); grayscale is repeated for CLIP.
        cnn_channels: channels of the structure branch at full, 1/2, 1/4, 1/8, 1/16 resolution.
        decoder_channels: channels of the fused features at 1/2, 1/4, 1/8, 1/16.
        num_prompt_tokens: learnable prompt tokens appended to the text sequence (DATE).
        adapter_hidden: hidden width of the text adapter (DATE).
        use_cnn_branch: SSE structure branch on/off (off: ViT features only, upsampled).
        use_knowledge: feed knowledge sentences to DATE (off: they are ignored even when given).
        use_vlcm: calibration module on/off (off: the FiLM layer of the pooled report embedding is the only place where
            text meets pixels).
        default_prompt: report used when ``forward`` gets no text (image-only tools such as ``verify_net_in_out``).
        attention_heads: heads of the VLCM attention.
        clip_layer_indices: ViT depths to tap (default: four evenly spaced).
        return_auxiliary: in training mode return the auxiliary outputs with the logits (see Outputs); ``False``:
            the logits alone in every mode.
        text_cache_max_bytes: bound in bytes of the frozen text encoder's cache (per process; least recently used
            out first; ``None``: no bound). A report takes about ``4 * embed_dim`` bytes per token in float32 (about
            38 KiB for 19 tokens with ViT-B-16), half that under bf16 autocast; a knowledge sentence ``4 * embed_dim``.
        guidance_channels: text-conditioned channels made from the (calibrated) pixel embeddings at 1/16 and
            concatenated, resampled, to the skip of every finer scale and to the full-resolution features, so that the
            decoder decides lesion by lesion, where its features show the lesion, what the report asked for (as the
            oracle's input channels in ``docs/benchmarks.md`` do); 0: none (the gate is the only text signal there).
        sentence_film: with the VLCM, modulate the pixel embeddings by the pooled report embedding (FiLM) before
            the calibration, so that the network reads the whole sentence as well as its tokens; always on without
            the VLCM, where it is the text path.

    Inputs:
        image: ``[B, in_channels, H, W]`` float in [0, 1]; H and W multiples of the ViT patch size (16).
        text_tokens: ``[B, L]`` CLIP tokens of the report (``[1, L]`` is shared by all images), or None for
            ``default_prompt``.
        knowledge_tokens: ``[B, K, L]`` CLIP tokens of knowledge sentences; all-zero rows are padding.
        Tokens are best given on the host, as the data loader makes them (``monai_ext.engines.PrepareBatchTextInput``,
        ``monai_ext.inferers.MetaInputInferer``): the text cache is keyed there, without waiting for the device.

    Outputs:
        In eval mode (inference, export) or with ``return_auxiliary=False``: ``[B, 1, H, W]`` segmentation logits.
        In training mode: ``{"pred": logits, "similarity": [B, 1, H/16, W/16]}``, ``"similarity"`` being the VLCM's
        pixel-text similarity logits (absent with ``use_vlcm=False``) for the alignment loss
        (:class:`monai_ext.losses.SimilarityMapLoss` added by :class:`monai_ext.losses.AuxiliaryOutputLoss`).

    Example::

        net = TGCNet(clip_model_name=TINY_CLIP_NAME, in_channels=1)
        tokens = get_clip_tokenizer(TINY_CLIP_NAME)(["Lower left lung infection."])
        image = torch.rand(1, 1, 224, 224)
        logits = net.eval()(image, tokens)  # [1, 1, 224, 224]
        outputs = net.train()(image, tokens)  # {"pred": [1, 1, 224, 224], "similarity": [1, 1, 14, 14]}
        loss_fn = AuxiliaryOutputLoss(DiceBCELoss(), SimilarityMapLoss(), weight=0.1, aux_keys=["similarity"])
        loss = loss_fn(outputs, label)

    TorchScript: ``torch.jit.script`` compiles the network (the Model Zoo's ``ckpt_export``); the switches are
    constants of the compiled module, and a scripted network encodes the text of every batch (no cache).
    """

    # Switches TorchScript compiles as constants, so that the branch of a part a switch leaves out is not compiled.
    __constants__ = ["use_cnn_branch", "use_knowledge", "use_vlcm", "use_guidance", "sentence_film"]

    def __init__(
        self,
        clip_model_name: str = "ViT-B-16",
        clip_pretrained: str | None = None,
        clip_checkpoint: str | None = None,
        in_channels: int = 1,
        cnn_channels: Sequence[int] = (16, 32, 64, 96, 128),
        decoder_channels: Sequence[int] = (32, 64, 96, 128),
        num_prompt_tokens: int = 4,
        adapter_hidden: int = 64,
        use_cnn_branch: bool = True,
        use_knowledge: bool = True,
        use_vlcm: bool = True,
        default_prompt: str = "Pulmonary infection in the lungs.",
        attention_heads: int = 4,
        clip_layer_indices: Sequence[int] | None = None,
        return_auxiliary: bool = True,
        text_cache_max_bytes: int | None = 2**30,
        guidance_channels: int = 16,
        sentence_film: bool = True,
    ):
        super().__init__()
        if guidance_channels < 0:
            raise ValueError(f"guidance_channels must be >= 0, got {guidance_channels}.")
        if len(cnn_channels) != 5 or len(decoder_channels) != 4:
            raise ValueError("cnn_channels needs 5 entries (full..1/16) and decoder_channels 4 entries (1/2..1/16).")
        clip = create_clip(clip_model_name, pretrained=clip_pretrained, checkpoint=clip_checkpoint)
        self.clip_model_name = clip_model_name
        self.in_channels = in_channels
        self.use_cnn_branch = use_cnn_branch
        self.use_knowledge = use_knowledge
        self.use_vlcm = use_vlcm
        self.use_guidance = guidance_channels > 0
        self.sentence_film = sentence_film or not use_vlcm
        self.return_auxiliary = return_auxiliary
        self.image_encoder = ClipImageEncoder(clip, layer_indices=clip_layer_indices, frozen=True)
        self.text_encoder = ClipTextEncoder(clip, frozen=True, cache=True, cache_max_bytes=text_cache_max_bytes)
        embed_dim = self.image_encoder.embed_dim
        vit_channels = self.image_encoder.out_channels

        # SSE: each ViT depth is projected and resampled to one decoder scale (shallow -> fine), then fused with the CNN.
        self.vit_projections = nn.ModuleList(
            [Convolution(2, vit_channels, ch, kernel_size=1, norm="instance", act="relu") for ch in decoder_channels]
        )
        if use_cnn_branch:
            self.structure_branch = ResidualEncoder(3, cnn_channels)
            self.fusions = nn.ModuleList(
                [
                    Convolution(2, ch + cnn_ch, ch, kernel_size=3, norm="instance", act="relu")
                    for ch, cnn_ch in zip(decoder_channels, cnn_channels[1:])
                ]
            )
            full_res_channels = cnn_channels[0]
        else:
            full_res_channels = 0

        # DATE: trainable adapter and prompt tokens over the frozen CLIP text features.
        self.text_adapter = _TextAdapter(embed_dim, adapter_hidden)
        self.prompt_tokens = nn.Parameter(torch.randn(num_prompt_tokens, embed_dim) * 0.02)

        # VLCM in the shared CLIP embedding space.
        self.pixel_to_clip = nn.Conv2d(decoder_channels[-1], embed_dim, kernel_size=1)
        if self.sentence_film:
            self.film = nn.Linear(embed_dim, 2 * embed_dim)
        if use_vlcm:
            self.calibration = _CalibrationModule(embed_dim, attention_heads)
        self.clip_to_pixel = nn.Conv2d(embed_dim, decoder_channels[-1], kernel_size=1)
        if self.use_guidance:
            self.guidance = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, guidance_channels))

        self.up_blocks = nn.ModuleList(
            [
                SkipUpBlock(decoder_channels[i + 1], decoder_channels[i] + guidance_channels, decoder_channels[i])
                for i in (2, 1, 0)
            ]
        )
        self.head = nn.Sequential(
            Convolution(
                2,
                decoder_channels[0] + full_res_channels + guidance_channels,
                decoder_channels[0],
                kernel_size=3,
                norm="instance",
            ),
            nn.Conv2d(decoder_channels[0], 1, kernel_size=1),
        )
        tokens = get_clip_tokenizer(clip_model_name)([default_prompt])
        self.register_buffer("default_text_tokens", tokens.long(), persistent=False)

    def count_parameters(self) -> dict[str, int]:
        """Trainable and total parameter counts (CLIP included in total, frozen)."""
        return count_parameters(self)

    def _text_sequence(
        self, text_tokens: torch.Tensor, knowledge_tokens: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Adapted text sequence [B, T, D], its padding mask [B, T] and the pooled report embedding [B, D]."""
        report_tokens, report_pooled, report_pad = self.text_encoder(text_tokens)
        batch = text_tokens.shape[0]
        device = report_tokens.device
        parts = [report_tokens]
        pads = [report_pad]
        if self.use_knowledge and knowledge_tokens is not None and knowledge_tokens.shape[1] > 0:
            # Of a knowledge sentence only its pooled embedding is read (and cached).
            knowledge_pooled = self.text_encoder.encode_pooled(knowledge_tokens.reshape(-1, knowledge_tokens.shape[-1]))
            parts.append(knowledge_pooled.reshape(batch, knowledge_tokens.shape[1], -1))
            pads.append((knowledge_tokens == 0).all(dim=-1).to(device, non_blocking=True))
        parts.append(self.prompt_tokens.unsqueeze(0).expand(batch, -1, -1).to(report_tokens.dtype))
        pads.append(torch.zeros(batch, self.prompt_tokens.shape[0], dtype=torch.bool, device=device))
        sequence = self.text_adapter(torch.cat(parts, dim=1))
        return sequence, torch.cat(pads, dim=1), self.text_adapter(report_pooled)

    def forward(
        self, image: torch.Tensor, text_tokens: torch.Tensor | None = None, knowledge_tokens: torch.Tensor | None = None
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        if image.shape[1] == 1:
            image = image.expand(-1, 3, -1, -1)
        if text_tokens is None:
            text_tokens = self.default_text_tokens.expand(image.shape[0], -1)
        elif text_tokens.dim() == 1:
            text_tokens = text_tokens.unsqueeze(0)
        # Tokens stay where the data loader made them (the host): the text encoder keys its cache there and moves
        # what it encodes to its device, so that a step waits for no device-to-host copy.
        text_tokens = match_batch(text_tokens.long(), image.shape[0])
        if knowledge_tokens is not None:
            knowledge_tokens = match_batch(knowledge_tokens.long(), image.shape[0])

        vit_maps, _ = self.image_encoder(image)
        scales: list[torch.Tensor] = []
        for level, proj in enumerate(self.vit_projections):
            size = [
                image.shape[-2] >> (level + 1),
                image.shape[-1] >> (level + 1),
            ]  # 1/2, 1/4, ... (int in TorchScript)
            feat = F.interpolate(proj(vit_maps[level].to(image.dtype)), size=size, mode="bilinear", align_corners=False)
            scales.append(feat)
        cnn_maps: list[torch.Tensor] = []
        if self.use_cnn_branch:
            cnn_maps = self.structure_branch(image)
            for level, fusion in enumerate(self.fusions):
                scales[level] = fusion(torch.cat([scales[level], cnn_maps[level + 1]], dim=1))

        deepest = scales[-1]
        pixels = self.pixel_to_clip(deepest)
        batch, dim, height, width = pixels.shape
        pixels = pixels.flatten(2).transpose(1, 2)
        text_seq, text_pad, report_pooled = self._text_sequence(text_tokens, knowledge_tokens)
        text_seq = text_seq.to(pixels.dtype)
        similarity: torch.Tensor | None = None
        if self.sentence_film:
            # The whole report (its pooled embedding) first modulates every pixel; the VLCM then reads it token by token.
            scale, shift = self.film(report_pooled.to(pixels.dtype)).chunk(2, dim=-1)
            pixels = pixels * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)
        if self.use_vlcm:
            pixels, similarity = self.calibration(pixels, text_seq, text_pad)
            similarity = similarity.reshape(batch, 1, height, width)
        x = deepest + self.clip_to_pixel(pixels.transpose(1, 2).reshape(batch, dim, height, width))
        guidance: torch.Tensor | None = None
        if self.use_guidance:
            # A few text-conditioned channels at 1/16, given to every finer scale beside its skip, so that the decoder
            # can keep or drop a lesion where its own features show it (the named findings are decided coarsely).
            guidance = self.guidance(pixels).transpose(1, 2).reshape(batch, -1, height, width)

        for level, block in enumerate(self.up_blocks):
            skip = scales[len(scales) - 2 - level]  # the next finer scale
            if similarity is not None:
                skip = skip * (1 + torch.sigmoid(_resized(similarity, skip)))
            if guidance is not None:
                skip = torch.cat([skip, _resized(guidance, skip)], dim=1)
            x = block(x, skip)
        x = _resized(x, image)
        if self.use_cnn_branch:
            x = torch.cat([x, cnn_maps[0]], dim=1)
        if guidance is not None:
            x = torch.cat([x, _resized(guidance, x)], dim=1)
        logits = self.head(x)
        if not (self.training and self.return_auxiliary):
            return logits
        if similarity is None:
            return {"pred": logits}
        return {"pred": logits, "similarity": similarity}

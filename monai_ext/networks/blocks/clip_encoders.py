"""Frozen (or trainable) CLIP image and text encoders exposing the intermediate features segmentation needs.

Both wrap parts of one open_clip model built by :func:`monai_ext.clip.create_clip`; building both from the
same model shares its parameters.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai_ext.text.cache import TextEmbeddingCache
from open_clip.transformer import VisionTransformer, text_global_pool

__all__ = ["ClipImageEncoder", "ClipTextEncoder", "default_layer_indices"]

_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def default_layer_indices(depth: int, count: int = 4) -> tuple[int, ...]:
    """``count`` evenly spaced 1-based block depths ending at ``depth`` (12 -> (3, 6, 9, 12))."""
    if depth < 1:
        raise ValueError(f"Transformer depth must be >= 1, got {depth}.")
    return tuple(sorted({max(1, round(depth * (i + 1) / count)) for i in range(count)}))


class ClipImageEncoder(nn.Module):
    """CLIP ViT image encoder returning multi-depth patch-feature maps and the projected global embedding.

    Images whose size differs from the CLIP input size are encoded at their own resolution: the learned positional
    embedding is bicubically interpolated to the image's patch grid (so feature maps keep spatial detail rather than
    being computed on a resized image). Height and width must be multiples of the patch size.

    Args:
        clip_model: open_clip model with a ``VisionTransformer`` visual tower.
        layer_indices: 1-based transformer depths whose outputs are returned (``(3, 6, 9, 12)`` for ViT-B);
            ``None`` takes 4 evenly spaced depths.
        frozen: keep CLIP weights fixed (``requires_grad=False``, no autograd graph, eval mode even in ``.train()``).

    Inputs:
        images: ``[B, C, H, W]`` float in [0, 1], ``C`` 1 (repeated to RGB) or 3; CLIP mean/std normalisation is
        applied inside.

    Returns:
        ``(maps, embedding)``: a list of ``[B, out_channels, H / patch, W / patch]`` tensors (one per layer index,
        shallow to deep) and the projected global embedding ``[B, embed_dim]``.

    Example::

        encoder = ClipImageEncoder(create_clip(TINY_CLIP_NAME))
        maps, embedding = encoder(torch.rand(2, 1, 224, 224))  # 4 x [2, 128, 14, 14], [2, 64]
    """

    def __init__(self, clip_model: nn.Module, layer_indices: Sequence[int] | None = None, frozen: bool = True) -> None:
        super().__init__()
        visual = getattr(clip_model, "visual", None)
        if not isinstance(visual, VisionTransformer):
            raise TypeError(
                f"ClipImageEncoder needs an open_clip VisionTransformer visual tower, got {type(visual).__name__}."
            )
        self.visual = visual
        depth = len(visual.transformer.resblocks)
        indices = default_layer_indices(depth) if layer_indices is None else tuple(int(i) for i in layer_indices)
        if not indices or any(i < 1 or i > depth for i in indices):
            raise ValueError(f"layer_indices must be 1-based depths in [1, {depth}], got {layer_indices}.")
        self.layer_indices = indices
        self.frozen = frozen
        mean = getattr(visual, "image_mean", None) or _OPENAI_MEAN
        std = getattr(visual, "image_std", None) or _OPENAI_STD
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        if frozen:
            self.visual.requires_grad_(False)
            self.visual.eval()

    @property
    def out_channels(self) -> int:
        """Channels of each feature map (the ViT width)."""
        return self.visual.conv1.out_channels

    @property
    def embed_dim(self) -> int:
        """Size of the projected global embedding (shared CLIP space)."""
        return self.visual.output_dim

    @property
    def patch_size(self) -> int:
        return self.visual.patch_size[0]

    def train(self, mode: bool = True) -> ClipImageEncoder:
        super().train(mode)
        if self.frozen:
            self.visual.eval()
        return self

    def _positional_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        pos = self.visual.positional_embedding
        old_h, old_w = self.visual.grid_size
        if grid_h == old_h and grid_w == old_w:
            return pos
        cls_pos, patch_pos = pos[:1], pos[1:]
        patch_pos = patch_pos.reshape(1, old_h, old_w, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos.float(), size=[grid_h, grid_w], mode="bicubic", align_corners=False)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(grid_h * grid_w, -1).to(pos.dtype)
        return torch.cat([cls_pos, patch_pos], dim=0)

    def _encode(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        visual = self.visual
        x = (images.float() - self.pixel_mean) / self.pixel_std
        x = visual.conv1(x.to(visual.conv1.weight.dtype))
        batch, width, grid_h, grid_w = x.shape
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(batch, 1, -1)
        x = torch.cat([cls, x], dim=1) + self._positional_embedding(grid_h, grid_w).to(x.dtype)
        x = visual.ln_pre(visual.patch_dropout(x))
        # open_clip takes 0-based block indices.
        x, intermediates = visual.transformer.forward_intermediates(x, indices=[i - 1 for i in self.layer_indices])
        maps = [y[:, 1:].transpose(1, 2).reshape(batch, width, grid_h, grid_w) for y in intermediates]
        pooled, _ = visual._pool(x)
        if visual.proj is not None:
            pooled = pooled @ visual.proj
        return maps, pooled

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"ClipImageEncoder expects images [B, 1 or 3, H, W], got shape {list(images.shape)}.")
        height, width = images.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"Image size {height}x{width} is not a multiple of the CLIP patch size {self.patch_size}; "
                "resize or pad the input (e.g. monai.transforms.DivisiblePadd(k=patch_size))."
            )
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        # Branches instead of nullcontext (TorchScript has none), no early return (TorchScript fails on one before a with).
        if self.frozen:
            with torch.no_grad():
                maps, embedding = self._encode(images)
        else:
            maps, embedding = self._encode(images)
        return maps, embedding


class ClipTextEncoder(nn.Module):
    """CLIP text encoder returning the projected token features, the pooled embedding and a padding mask.

    Args:
        clip_model: open_clip ``CLIP`` model (or ``CustomTextCLIP`` with an open_clip ``TextTransformer``).
        frozen: keep text weights fixed (``requires_grad=False``, no autograd graph).
        cache: when frozen, encode each distinct text once and keep what the networks read (a
            :class:`TextEmbeddingCache`, not part of the state dict; keyed by device, autocast dtype and inference
            mode, and cleared when the module is moved, cast or loaded): for :meth:`forward` the projected features of
            the text's own tokens, for :meth:`encode_pooled` the pooled embedding alone, in the compute dtype.
        cache_max_bytes: bound of that cache in bytes (least recently used out first); ``None`` for no bound.
        miss_batch_size: texts missing from the cache are encoded together, this many per call, in calls of one fixed
            shape (unused rows are padding): CPU matrix kernels can round differently for different shapes, and a
            cached embedding must not depend on which batch first met its text, or a resumed training (cold cache)
            would drift from an uninterrupted one.
        length_multiple: missing texts are cut to their own token length rounded up to this multiple (the length
            fixes the call's shape, so it depends on the text alone). CLIP's causal text transformer with
            end-of-text pooling makes the cut exact; a tower without a causal mask, or pooling at the last position,
            is encoded over the full context.

    Inputs:
        tokens: integer ``[B, L]`` from the model's tokenizer (0 = padding), ``L`` the context length. Give the
        tokens as the data loader made them, on the host: cache keys are made from them there, so a batch makes no
        host-device synchronisation; the encoder moves what it encodes to its own device.

    Returns:
        ``forward``: ``(projected_tokens [B, T, embed_dim], pooled [B, embed_dim], padding_mask [B, T] bool, True at
        padding)`` on the encoder's device. ``T`` is the context length when nothing is cached (unfrozen, no cache,
        TorchScript) and the longest text of the batch when cached: positions past a text's end are padding either
        way. ``pooled`` equals CLIP's ``encode_text``. ``encode_pooled``: ``pooled`` alone.

    Example::

        encoder = ClipTextEncoder(create_clip(TINY_CLIP_NAME))
        tokens = get_clip_tokenizer(TINY_CLIP_NAME)(["Left lower lobe consolidation."])
        projected, pooled, pad = encoder(tokens)
        knowledge = encoder.encode_pooled(tokens)
    """

    def __init__(
        self,
        clip_model: nn.Module,
        frozen: bool = True,
        cache: bool = True,
        cache_max_bytes: int | None = None,
        miss_batch_size: int = 8,
        length_multiple: int = 8,
    ) -> None:
        super().__init__()
        tower = getattr(clip_model, "text", clip_model)
        required = ("token_embedding", "positional_embedding", "transformer", "ln_final")
        if any(not hasattr(tower, name) for name in required) or getattr(tower, "cls_emb", None) is not None:
            raise TypeError(
                f"ClipTextEncoder supports open_clip CLIP text towers (causal transformer, EOT pooling); "
                f"got {type(tower).__name__}."
            )
        if miss_batch_size < 1 or length_multiple < 1:
            raise ValueError(
                f"miss_batch_size and length_multiple must be >= 1, got {miss_batch_size} and {length_multiple}."
            )
        self.token_embedding = tower.token_embedding
        self.positional_embedding = tower.positional_embedding
        self.transformer = tower.transformer
        self.ln_final = tower.ln_final
        self.text_projection = tower.text_projection
        self.pool_type = getattr(tower, "text_pool_type", getattr(tower, "pool_type", "argmax"))
        self.eos_id = getattr(tower, "text_eos_id", getattr(tower, "eos_id", None))
        self.register_buffer("attn_mask", tower.attn_mask, persistent=False)
        self.frozen = frozen
        self.miss_batch_size = int(miss_batch_size)
        self.length_multiple = int(length_multiple)
        # Cutting trailing padding leaves a position's output unchanged only if it never attends to later positions
        # and the pooled position lies inside the text.
        self.cuts_to_length = tower.attn_mask is not None and self.pool_type in ("argmax", "eos", "first")
        self.cache = TextEmbeddingCache(cache_max_bytes) if (frozen and cache) else None
        self._cache_id = uuid.uuid4().hex
        # New weights make cached embeddings stale; the hook also fires when a parent module loads a state dict.
        self.register_load_state_dict_post_hook(ClipTextEncoder._clear_cache)
        if frozen:
            for module in (self.token_embedding, self.transformer, self.ln_final):
                module.requires_grad_(False)
            self.positional_embedding.requires_grad_(False)
            if isinstance(self.text_projection, nn.Parameter):
                self.text_projection.requires_grad_(False)
            elif isinstance(self.text_projection, nn.Module):
                self.text_projection.requires_grad_(False)

    @property
    def width(self) -> int:
        return self.token_embedding.embedding_dim

    @property
    def embed_dim(self) -> int:
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection.out_features
        return self.width if self.text_projection is None else self.text_projection.shape[1]

    @property
    def context_length(self) -> int:
        return self.positional_embedding.shape[0]

    def _clear_cache(self, *_) -> None:
        if self.cache is not None:
            self.cache.clear()

    def _apply(self, fn, *args, **kwargs):
        # Cached tensors live on the old device/dtype: drop them whenever the module is moved or cast.
        self._clear_cache()
        return super()._apply(fn, *args, **kwargs)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        if self.text_projection is None:
            return x
        if isinstance(self.text_projection, nn.Linear):  # open_clip's projection: a Linear, a matrix or None
            return self.text_projection(x)
        return x @ self.text_projection

    def _project_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Projected features ``[B, L', embed_dim]`` of tokens ``[B, L']``, ``L'`` at most the context length."""
        length = tokens.shape[1]
        cast_dtype = self.transformer.get_cast_dtype()
        x = self.token_embedding(tokens).to(cast_dtype) + self.positional_embedding[:length].to(cast_dtype)
        attn_mask = self.attn_mask
        if attn_mask is not None:
            attn_mask = attn_mask[:length, :length]
        # The projection is linear, so pooling projected tokens equals CLIP's encode_text (pool, then project).
        return self._project(self.ln_final(self.transformer(x, attn_mask=attn_mask)))

    def _check_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 2 or tokens.dtype not in (torch.int32, torch.int64):
            raise ValueError(
                f"ClipTextEncoder expects integer tokens [B, L], got shape {list(tokens.shape)} dtype {tokens.dtype}."
            )
        if tokens.shape[1] != self.context_length:
            raise ValueError(
                f"Token length {tokens.shape[1]} differs from the CLIP context length {self.context_length}; "
                "tokenize with the tokenizer of the same CLIP model."
            )
        return tokens.long()

    def _encode_full(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens = tokens.to(self.token_embedding.weight.device)
        projected = self._project_tokens(tokens)
        pooled = text_global_pool(projected, tokens, self.pool_type, eos_token_id=self.eos_id)
        return projected, pooled, tokens == 0

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens = self._check_tokens(tokens)
        if not self.frozen:
            projected, pooled, padding_mask = self._encode_full(tokens)
        elif torch.jit.is_scripting():  # TorchScript keeps no cache: every batch is encoded
            with torch.no_grad():
                projected, pooled, padding_mask = self._encode_full(tokens)
        else:
            projected, pooled, padding_mask = self._encode_frozen(tokens)
        return projected, pooled, padding_mask

    def encode_pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """The pooled embeddings ``[B, embed_dim]`` of tokens ``[B, L]`` (cached apart from :meth:`forward`'s entries,
        at 1/T of their size: for texts of which only the sentence embedding is read)."""
        tokens = self._check_tokens(tokens)
        if not self.frozen:
            pooled = self._encode_full(tokens)[1]
        elif torch.jit.is_scripting():
            with torch.no_grad():
                pooled = self._encode_full(tokens)[1]
        else:
            pooled = self._encode_frozen_pooled(tokens)
        return pooled

    @torch.jit.unused
    def _pool_positions(self, host_tokens: torch.Tensor) -> torch.Tensor:
        """Per row, the position ``text_global_pool`` reads (as open_clip computes it, on the host)."""
        if self.pool_type == "argmax":
            return host_tokens.argmax(dim=-1)
        if self.pool_type == "eos":
            return (host_tokens == self.eos_id).int().argmax(dim=-1)
        if self.pool_type == "first":
            return torch.zeros(host_tokens.shape[0], dtype=torch.long)
        return torch.full((host_tokens.shape[0],), host_tokens.shape[1] - 1, dtype=torch.long)

    @torch.jit.unused
    def _token_lengths(self, host_tokens: torch.Tensor) -> list[int]:
        """Per row, the tokens up to the last non-padding one (at least one); the full context without cutting."""
        if not self.cuts_to_length:
            return [host_tokens.shape[1]] * host_tokens.shape[0]
        positions = torch.arange(1, host_tokens.shape[1] + 1)
        return (positions * (host_tokens != 0)).amax(dim=-1).clamp_min(1).tolist()

    @torch.jit.unused
    def _encode_misses(
        self, host_tokens: torch.Tensor, lengths: list[int], positions: list[int], missing: list[int], pooled_only: bool
    ) -> list[torch.Tensor]:
        """Cache values of the rows ``missing``: encoded in calls of ``miss_batch_size`` rows, grouped by length."""
        by_length: dict[int, list[int]] = {}
        for row in missing:
            bucket = min(-(-lengths[row] // self.length_multiple) * self.length_multiple, host_tokens.shape[1])
            by_length.setdefault(bucket, []).append(row)
        device = self.token_embedding.weight.device
        values: dict[int, torch.Tensor] = {}
        for bucket, rows in by_length.items():
            for start in range(0, len(rows), self.miss_batch_size):
                chunk = rows[start : start + self.miss_batch_size]
                batch = host_tokens.new_zeros(self.miss_batch_size, bucket)
                batch[: len(chunk)] = host_tokens[chunk, :bucket]
                projected = self._project_tokens(batch.to(device, non_blocking=True))
                # clone: an entry must own its memory, not keep the whole call's output alive.
                for index, row in enumerate(chunk):
                    kept = projected[index, positions[row]] if pooled_only else projected[index, : lengths[row]]
                    values[row] = kept.clone()
        return [values[row] for row in missing]

    @torch.jit.unused
    def _cached_values(self, tokens: torch.Tensor, pooled_only: bool):
        """``(values, host_tokens, lengths, positions)``: one cache value per row of ``tokens``, encoding the rows the
        cache lacks, with the host tokens and each row's length and pooled position they were read from."""
        # Tokens on the host (as the data loader made them) give keys without waiting for the device.
        host_tokens = tokens.detach().to("cpu")
        lengths = self._token_lengths(host_tokens)
        positions = self._pool_positions(host_tokens).tolist()
        device = self.token_embedding.weight.device
        autocast_dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
        # Inference-mode tensors cannot enter autograd later, so they are cached apart from no_grad ones.
        encoder_id = (
            self._cache_id,
            str(device),
            str(autocast_dtype),
            torch.is_inference_mode_enabled(),
            "pooled" if pooled_only else "tokens",
        )
        keys = [TextEmbeddingCache.make_key(encoder_id, row[:length]) for row, length in zip(host_tokens, lengths)]
        values = self.cache.get_or_compute(
            keys, lambda missing: self._encode_misses(host_tokens, lengths, positions, missing, pooled_only)
        )
        return values, host_tokens, lengths, positions

    @torch.jit.unused
    def _encode_frozen(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            if self.cache is None:
                return self._encode_full(tokens)
            values, host_tokens, lengths, positions = self._cached_values(tokens, pooled_only=False)
            projected = nn.utils.rnn.pad_sequence(values, batch_first=True)
            pooled = torch.stack([value[position] for value, position in zip(values, positions)])
            device = self.token_embedding.weight.device
            padding_mask = (host_tokens[:, : max(lengths)] == 0).to(device, non_blocking=True)
            return projected, pooled, padding_mask

    @torch.jit.unused
    def _encode_frozen_pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if self.cache is None:
                return self._encode_full(tokens)[1]
            return torch.stack(self._cached_values(tokens, pooled_only=True)[0])

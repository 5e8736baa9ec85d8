"""VLSA-Net: vision-language semantic aggregation for single-source domain-generalised segmentation (arXiv 2509.08570).

The paper names two parts around a CLIP backbone and publishes no code; the concrete design below is ours:

* Visual path: CLIP ViT patch features from several depths are reassembled into a pyramid (DPT-style: the shallower
  depths are upsampled by transposed convs to 1/4 and 1/8, the two deepest stay at 1/16), plus a two-layer conv stem on
  the image (1/2, 1/4) for boundary detail that 16-pixel patches lose.
* EM aggregation (:class:`~monai_ext.networks.blocks.em_aggregation.EMAggregation`) on the deepest level clusters the
  dispersed patch features into compact semantic bases before they meet the text.
* Text: each class is described by its name plus several domain-invariant sentences (shape, position, relations);
  the frozen CLIP text encoder embeds them and their L2-normalised mean is the class embedding, computed once and
  cached.
* Text-Guided Pixel Decoder (:class:`~monai_ext.networks.blocks.text_guided_decoder.TextGuidedPixelDecoder`): the
  aggregated deepest pixels attend to the class embeddings, an FPN-like path fuses the shallower levels, and the logits
  add a learned-temperature cosine between the 1/2-resolution pixel features and the class embeddings (projected to
  the decoder width) to a conv head.
* Auxiliary outputs: in training the network also returns that cosine map, for
  :class:`~monai_ext.losses.alignment.PixelTextAlignmentLoss`, which makes the text term segment on its own rather
  than leaving it to the conv head; the similarity is computed once per forward, by the decoder, and the loss reuses it.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai_ext.clip import TINY_CLIP_NAME, create_clip, get_clip_tokenizer
from monai_ext.networks.blocks.clip_encoders import ClipImageEncoder, ClipTextEncoder
from monai_ext.networks.blocks.em_aggregation import EMAggregation
from monai_ext.networks.blocks.text_guided_decoder import TextGuidedPixelDecoder
from monai_ext.networks.utils import count_parameters

__all__ = ["VLSANet", "load_class_prompts"]


def _check_prompt_list(prompts, name: str, where: str) -> list[str]:
    if not isinstance(prompts, (list, tuple)) or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ValueError(f"{where}: prompts of class {name!r} must be a list of non-empty strings, got {prompts!r}.")
    return [p.strip() for p in prompts]


def load_class_prompts(source: str | os.PathLike | Mapping) -> dict[str, list[str]]:
    """Class name -> descriptive prompts, from a JSON file or an already loaded mapping.

    Accepted forms: ``{"classes": [{"name": "optic disc", "prompts": ["...", ...]}, ...]}`` (the bundle's prompt
    files) or ``{"optic disc": ["...", ...], ...}``. Class order is kept.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not JSON or does not have one of the forms above (the message names the file).
    """
    if isinstance(source, Mapping):
        data, where = source, "class_prompts"
    else:
        path = Path(source).expanduser()
        where = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"Class prompt file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"Class prompt file {path} is not valid UTF-8 JSON: {err}") from err
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}.")
    if "classes" in data:
        entries = data["classes"]
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{where}: 'classes' must be a non-empty list of {{'name': ..., 'prompts': [...]}}.")
        pairs = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
                raise ValueError(f"{where}: classes[{i}] needs a non-empty string 'name', got {entry!r}.")
            pairs.append((entry["name"].strip(), entry.get("prompts", [])))
    else:
        pairs = list(data.items())
    if not pairs:
        raise ValueError(f"{where}: no classes defined.")
    prompts: dict[str, list[str]] = {}
    for name, class_prompts in pairs:
        if name in prompts:
            raise ValueError(f"{where}: class {name!r} is defined twice.")
        prompts[name] = _check_prompt_list(class_prompts, name, where)
    return prompts


def _reassemble(width: int, channels: int, factor: int) -> nn.Module:
    """ViT patch map -> ``channels`` at ``factor`` times the patch-grid resolution (1x1 conv, then transposed conv)."""
    project = Convolution(2, width, channels, kernel_size=1, norm="instance", act="relu")
    if factor == 1:
        return project
    upsample = Convolution(
        2, channels, channels, strides=factor, kernel_size=factor, padding=0, output_padding=0,
        is_transposed=True, norm="instance", act="relu",
    )  # fmt: skip
    return nn.Sequential(project, upsample)


class VLSANet(nn.Module):
    """CLIP-based multi-class segmentation guided by class descriptions, with EM aggregation (VLSA-Net).

    Args:
        clip_model_name: open_clip model name (``"ViT-B-16"`` for the paper setting, ``TINY_CLIP_NAME`` for tests).
        clip_pretrained: open_clip pretrained tag, looked up in local caches only.
        clip_checkpoint: local CLIP weights file; takes precedence over ``clip_pretrained``.
        class_prompts: ``{class name: [sentences]}`` or a path to a prompt JSON (see :func:`load_class_prompts`).
            Each class is encoded from its name plus its sentences. ``None``: the names in ``class_names`` alone.
        class_names: classes to segment, in channel order (a subset/reordering of ``class_prompts``); default: all
            classes of ``class_prompts`` in file order. Channel 0 is conventionally the background.
        num_bases: EM bases ``K``.
        em_iterations: EM iterations per forward.
        em_momentum: moving-average momentum of the EM bases.
        use_em: EM aggregation on (off: identity, an ablation).
        use_text: class embeddings from the CLIP text encoder (off: learned class embeddings of the same shape, an
            ablation without language; ``text_tokens`` are then refused).
        freeze_clip: ``True`` (CLIP fixed), ``"partial"`` (the last ``tune_last_blocks`` vision transformer blocks
            train; the text encoder stays fixed so class embeddings remain domain-invariant and cached) or ``False``
            (all of CLIP trains, text included; class embeddings are then recomputed every forward).
        tune_last_blocks: number of trailing vision blocks to train with ``freeze_clip="partial"``.
        image_size: the size the network is trained at (a multiple of the patch size). Any input whose sides are
            multiples of the patch size works: the CLIP positional embedding is interpolated to its grid.
        decoder_channels: width of the stem, the reassembled ViT levels and the decoder (even, divisible by
            ``num_heads``).
        num_heads: heads of the pixel-to-text cross-attention.
        clip_layer_indices: 1-based ViT depths tapped (default: four evenly spaced, ending with the last block).
        return_auxiliary: in training mode return the auxiliary outputs with the logits (see Outputs); ``False``:
            the logits alone in every mode.

    Inputs:
        image: ``[B, 1 or 3, H, W]`` float in [0, 1] (grayscale is repeated to RGB); H, W multiples of the patch size.
        text_tokens: ``None`` for the class prompts; or CLIP tokens overriding them: ``[K, L]`` (one prompt per class),
            ``[K, P, L]`` (P prompts per class, all-zero rows are padding) or ``[B, K, P, L]`` (per image).

    Outputs:
        In eval mode (inference, export) or with ``return_auxiliary=False``: logits ``[B, K, H, W]`` (one channel per
        class; apply softmax over channels). In training mode a dict: ``"pred"`` (the logits),
        ``"pixel_text_similarity"`` ``[B, K, H/2, W/2]`` (the decoder's cosine between each pixel and each class
        embedding, in [-1, 1], for the alignment loss), and with EM ``"em_assignments"`` ``[B, N, num_bases]`` and
        ``"em_bases"`` ``[B, decoder_channels, num_bases]`` (N: the patches of the deepest level).

    Example::

        net = VLSANet(TINY_CLIP_NAME, class_prompts="bundles/vlsanet/configs/prompts_fundus.json")
        image = torch.rand(2, 3, 224, 224)
        logits = net.eval()(image)  # [2, 3, 224, 224]
        outputs = net.train()(image)  # {"pred": [2, 3, 224, 224], "pixel_text_similarity": [2, 3, 112, 112], ...}
        loss_fn = AuxiliaryOutputLoss(
            DiceCELoss(to_onehot_y=True, softmax=True),
            PixelTextAlignmentLoss(),
            weight=0.1,
            aux_keys=["pixel_text_similarity"],
        )
        loss = loss_fn(outputs, label)

    TorchScript: ``torch.jit.script`` compiles the network in eval mode (the Model Zoo's ``ckpt_export``); the
    switches are constants of the compiled module, and a scripted network encodes the class prompts in every forward
    (no cache).
    """

    # Switches TorchScript compiles as constants, so that the branch of a part a switch leaves out is not compiled.
    __constants__ = ["use_em", "use_text"]

    def __init__(
        self,
        clip_model_name: str = TINY_CLIP_NAME,
        clip_pretrained: str | None = None,
        clip_checkpoint: str | os.PathLike | None = None,
        class_prompts: Mapping[str, Sequence[str]] | str | os.PathLike | None = None,
        class_names: Sequence[str] | None = None,
        num_bases: int = 64,
        em_iterations: int = 3,
        em_momentum: float = 0.9,
        use_em: bool = True,
        use_text: bool = True,
        freeze_clip: bool | str = True,
        tune_last_blocks: int | None = None,
        image_size: int = 224,
        decoder_channels: int = 64,
        num_heads: int = 4,
        clip_layer_indices: Sequence[int] | None = None,
        return_auxiliary: bool = True,
    ) -> None:
        super().__init__()
        if freeze_clip != "partial" and not isinstance(freeze_clip, bool):
            raise ValueError(f"freeze_clip must be True, False or 'partial', got {freeze_clip!r}.")
        if (freeze_clip == "partial") != (tune_last_blocks is not None):
            raise ValueError("tune_last_blocks is required with freeze_clip='partial' and only allowed with it.")
        if decoder_channels < 2 or decoder_channels % 2:
            raise ValueError(f"decoder_channels must be an even number >= 2, got {decoder_channels}.")
        self.class_prompts = self._select_classes(class_prompts, class_names)
        self.class_names = list(self.class_prompts)
        self.num_classes = len(self.class_names)
        self.clip_model_name = clip_model_name
        self.use_em = use_em
        self.use_text = use_text
        self.freeze_clip = freeze_clip
        self.return_auxiliary = return_auxiliary

        clip = create_clip(clip_model_name, pretrained=clip_pretrained, checkpoint=clip_checkpoint)
        self.image_encoder = ClipImageEncoder(clip, layer_indices=clip_layer_indices, frozen=freeze_clip is True)
        if freeze_clip == "partial":
            self._unfreeze_last_blocks(tune_last_blocks)
        patch_size = self.image_encoder.patch_size
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of the CLIP patch size {patch_size}.")
        self.image_size = image_size
        embed_dim = self.image_encoder.embed_dim

        self.stem = nn.ModuleList(
            [
                Convolution(2, 3, decoder_channels // 2, strides=2, kernel_size=3, norm="instance", act="relu"),
                Convolution(
                    2, decoder_channels // 2, decoder_channels, strides=2, kernel_size=3, norm="instance", act="relu"
                ),
            ]
        )
        num_taps = len(self.image_encoder.layer_indices)
        # Deepest two depths stay at the patch grid (1/16); shallower ones are upsampled x2, then x4 (capped).
        factors = [min(2 ** max(num_taps - 2 - i, 0), 4) for i in range(num_taps)]
        self.reassemble = nn.ModuleList(
            [_reassemble(self.image_encoder.out_channels, decoder_channels, f) for f in factors]
        )
        self.aggregation = (
            EMAggregation(decoder_channels, num_bases=num_bases, iterations=em_iterations, momentum=em_momentum)
            if use_em
            else nn.Identity()
        )
        self.decoder = TextGuidedPixelDecoder(
            in_channels=(decoder_channels // 2, decoder_channels, *[decoder_channels] * num_taps),
            text_dim=embed_dim,
            num_classes=self.num_classes,
            channels=decoder_channels,
            num_heads=num_heads,
        )

        if use_text:
            self.text_encoder = ClipTextEncoder(clip, frozen=freeze_clip is not False, cache=True)
            self.register_buffer("prompt_tokens", self._tokenize_prompts(), persistent=False)
            # A host copy that moving the module leaves behind: the cached class embeddings are encoded from it, so
            # that the text cache is keyed without a device-to-host copy.
            self._prompt_tokens_host = self.prompt_tokens.clone()
        else:
            self.learned_class_embeddings = nn.Parameter(torch.randn(self.num_classes, embed_dim) * embed_dim**-0.5)
        self._class_embedding_cache = {}  # (device, inference mode) -> class embeddings
        self.register_load_state_dict_post_hook(VLSANet._clear_text_caches)

    @staticmethod
    def _select_classes(class_prompts, class_names) -> dict[str, list[str]]:
        if class_prompts is None:
            if not class_names:
                raise ValueError("Give class_prompts (a mapping or prompt JSON path) or at least class_names.")
            available = {str(name): [] for name in class_names}
        else:
            available = load_class_prompts(class_prompts)
        if class_names is None:
            selected = list(available)
        else:
            selected = [str(name) for name in class_names]
            unknown = [name for name in selected if name not in available]
            if unknown or len(set(selected)) != len(selected):
                raise ValueError(
                    f"class_names {selected} must be distinct classes of the prompts; unknown: {unknown}, "
                    f"available: {list(available)}."
                )
        # The class name is itself the first prompt, followed by its descriptive sentences.
        return {name: [name, *[p for p in available[name] if p != name]] for name in selected}

    def _unfreeze_last_blocks(self, count: int) -> None:
        blocks = self.image_encoder.visual.transformer.resblocks
        if not 1 <= count <= len(blocks):
            raise ValueError(
                f"tune_last_blocks must be in [1, {len(blocks)}] for {self.clip_model_name!r}, got {count}."
            )
        self.image_encoder.visual.requires_grad_(False)
        for block in blocks[len(blocks) - count :]:
            block.requires_grad_(True)

    def _tokenize_prompts(self) -> torch.Tensor:
        """All class prompts as tokens ``[K, P, L]``, classes with fewer prompts padded by all-zero rows."""
        tokenizer = get_clip_tokenizer(self.clip_model_name)
        per_class = [tokenizer(prompts).long() for prompts in self.class_prompts.values()]
        # A full context (non-zero last token) means the tokenizer cut the sentence.
        truncated = [
            prompt
            for tokens, prompts in zip(per_class, self.class_prompts.values())
            for row, prompt in zip(tokens, prompts)
            if row[-1] != 0
        ]
        if truncated:
            warnings.warn(f"Class prompts longer than the CLIP context are truncated: {truncated[:3]}", stacklevel=3)
        most = max(t.shape[0] for t in per_class)
        return torch.stack([F.pad(t, (0, 0, 0, most - t.shape[0])) for t in per_class])

    def _clear_text_caches(self, *_) -> None:
        # Loaded weights may differ from those the cached class embeddings were computed with (the text encoder
        # clears its own cache).
        self._class_embedding_cache.clear()

    def _apply(self, fn, *args, **kwargs):
        # Cached embeddings live on the old device/dtype.
        self._class_embedding_cache.clear()
        return super()._apply(fn, *args, **kwargs)

    def count_parameters(self) -> dict[str, int]:
        """Trainable and total parameter counts (CLIP included in the total)."""
        return count_parameters(self)

    def _encode_prompts(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``[..., P, L]`` -> L2-normalised mean of the normalised prompt embeddings ``[..., D]``.

        Every row is encoded and padding rows are masked out arithmetically (no boolean indexing, which would wait
        for the device); each class has at least one prompt (:meth:`_check_text_tokens`, the class name itself).
        """
        flat = tokens.reshape(-1, tokens.shape[-1])
        pooled = F.normalize(self.text_encoder.encode_pooled(flat).float(), dim=-1)
        present = (flat != 0).any(dim=-1).to(device=pooled.device, dtype=pooled.dtype, non_blocking=True)
        embeddings = (pooled * present.unsqueeze(-1)).reshape(list(tokens.shape[:-1]) + [-1])
        return F.normalize(embeddings.sum(dim=-2), dim=-1)

    def _check_text_tokens(self, text_tokens: torch.Tensor, batch: int) -> torch.Tensor:
        if text_tokens.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"text_tokens must be integer CLIP tokens, got dtype {text_tokens.dtype}.")
        if text_tokens.ndim == 2:
            text_tokens = text_tokens.unsqueeze(1)
        if text_tokens.ndim not in (3, 4) or text_tokens.shape[-3] != self.num_classes:
            raise ValueError(
                f"text_tokens must be [K, L], [K, P, L] or [B, K, P, L] with K = {self.num_classes} classes "
                f"({self.class_names}); got shape {list(text_tokens.shape)}."
            )
        if text_tokens.ndim == 4 and text_tokens.shape[0] not in (1, batch):
            raise ValueError(f"text_tokens hold prompts for {text_tokens.shape[0]} images but the batch has {batch}.")
        if not (text_tokens != 0).any(dim=-1).any(dim=-1).all():
            raise ValueError("Every class needs at least one prompt: some class has only all-zero (padding) rows.")
        return text_tokens.long()

    def class_embeddings(self, text_tokens: torch.Tensor | None = None, batch: int = 1) -> torch.Tensor:
        """Class embeddings ``[K, D]`` (``[B, K, D]`` for per-image ``text_tokens``) in the CLIP embedding space.

        Embeddings of the built-in class prompts from a frozen text encoder are computed once per device (and per
        inference-mode state, whose tensors cannot enter autograd later) in float32, then reused; a scripted network
        (TorchScript) keeps no cache and encodes them in every forward.
        """
        # if/else throughout: TorchScript compiles only the branch of the use_text constant that the network has.
        if not self.use_text:
            if text_tokens is not None:
                raise ValueError(
                    "This VLSANet was built with use_text=False (learned class embeddings): no text_tokens."
                )
            return self.learned_class_embeddings
        else:
            if text_tokens is not None:
                return self._encode_prompts_float32(self._check_text_tokens(text_tokens, batch))
            if torch.jit.is_scripting():
                return self._encode_prompts_float32(self.prompt_tokens)
            else:
                return self._cached_class_embeddings(batch)

    def _cached_class_embeddings(self, batch: int) -> torch.Tensor:
        cacheable = self.freeze_clip is not False
        if cacheable and torch.jit.is_tracing():
            # Traced export (ONNX, ckpt_export with use_trace): the frozen prompt embeddings become a constant of the
            # graph. Computing them with tracing paused keeps every trace identical, whether or not they were cached.
            tracing_state = torch._C._get_tracing_state()
            torch._C._set_tracing_state(None)
            try:
                return self.class_embeddings(None, batch).detach().clone()
            finally:
                torch._C._set_tracing_state(tracing_state)
        key = (str(self.prompt_tokens.device), torch.is_inference_mode_enabled())
        if cacheable and key in self._class_embedding_cache:
            return self._class_embedding_cache[key]
        embeddings = self._encode_prompts_float32(self._prompt_tokens_host)
        if cacheable:
            self._class_embedding_cache[key] = embeddings
        return embeddings

    def _encode_prompts_float32(self, tokens: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # TorchScript's autocast needs a constant device type; scripted runs are float32
            return self._encode_prompts(tokens)
        else:
            # The encoder's device, not the tokens': they may be a host copy.
            with torch.autocast(self.prompt_tokens.device.type, enabled=False):
                return self._encode_prompts(tokens)

    def forward(
        self, image: torch.Tensor, text_tokens: torch.Tensor | None = None
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        if image.ndim != 4 or image.shape[1] not in (1, 3):
            raise ValueError(f"VLSANet expects images [B, 1 or 3, H, W], got shape {list(image.shape)}.")
        rgb = image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
        taps, _ = self.image_encoder(rgb)
        levels: list[torch.Tensor] = []
        for level, block in enumerate(self.reassemble):
            levels.append(block(taps[level].to(image.dtype)))
        assignments: torch.Tensor | None = None
        bases: torch.Tensor | None = None
        if self.use_em:
            aggregated, assignments, bases = self.aggregation.aggregate(levels[-1])
            levels[-1] = aggregated
        stem_half = self.stem[0](rgb)
        stem_quarter = self.stem[1](stem_half)
        class_embeddings = self.class_embeddings(text_tokens, batch=image.shape[0])
        if class_embeddings.ndim == 3 and class_embeddings.shape[0] == 1:
            class_embeddings = class_embeddings[0]
        logits, similarity = self.decoder(
            [stem_half, stem_quarter] + levels, class_embeddings, output_size=image.shape[-2:]
        )
        if not (self.training and self.return_auxiliary):
            return logits
        outputs: dict[str, torch.Tensor] = {"pred": logits, "pixel_text_similarity": similarity}
        if assignments is not None and bases is not None:  # with EM
            outputs["em_assignments"], outputs["em_bases"] = assignments, bases
        return outputs

"""Text -> token transforms for CLIP (open_clip BPE) and local Hugging Face tokenizers."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai_ext.clip import get_clip_tokenizer

__all__ = ["ClipTokenize", "ClipTokenized", "HFTokenize", "HFTokenized", "TextInputError"]

logger = logging.getLogger(__name__)


class TextInputError(ValueError):
    """Text given to a tokenizer is empty, whitespace-only or not a string."""


def _as_text_list(text, allow_empty: bool, where: str) -> tuple[list[str], bool]:
    """Validate ``text`` (a string or a sequence of strings); return the list and whether a single string was given."""
    single = isinstance(text, str)
    texts = [text] if single else text
    if not isinstance(texts, Sequence) or isinstance(texts, (bytes, bytearray)):
        raise TextInputError(f"{where}: expected a string or a list of strings, got {type(text).__name__}.")
    if len(texts) == 0:
        raise TextInputError(f"{where}: got an empty list of texts.")
    for i, item in enumerate(texts):
        if not isinstance(item, str):
            raise TextInputError(f"{where}: item {i} is {type(item).__name__}, not a string ({item!r:.60}).")
        if not item.strip() and not (allow_empty and item == ""):
            hint = "" if allow_empty else " (pass allow_empty=True to accept '' as padding)"
            raise TextInputError(f"{where}: item {i} is empty or whitespace-only{hint}.")
    return list(texts), single


def _item_source(d: Mapping) -> str:
    """The image (file) a dictionary item stands for, for error messages."""
    for key in ("name", "image"):
        value = d.get(key)
        meta = getattr(value, "meta", None)
        if isinstance(meta, Mapping) and meta.get("filename_or_obj"):
            return f"'{meta['filename_or_obj']}'"
        if isinstance(value, (str, os.PathLike)):
            return f"'{os.fspath(value)}'"
    return "the item"


def _tokenize_item(tokenize: Callable, d: Mapping, key: Hashable):
    """``tokenize(d[key])``; a bad text's error names the key and the image it belongs to."""
    try:
        return tokenize(d[key])
    except TextInputError as error:
        raise TextInputError(f"Report '{key}' of {_item_source(d)}: {error}") from error


def _output_keys(keys: Sequence[Hashable], output_key, suffix: str) -> list[Hashable]:
    if output_key is None:
        return [f"{key}{suffix}" for key in keys]
    out = [output_key] if isinstance(output_key, (str, int)) else list(output_key)
    if len(out) != len(keys):
        raise ValueError(f"output_key needs one name per key: keys {list(keys)}, output_key {out}.")
    return out


class ClipTokenize(Transform):
    """Tokenize text with the open_clip tokenizer of a CLIP model (CLIP BPE, unicode-safe, offline).

    Args:
        model_name: open_clip model name whose tokenizer is used (e.g. ``"ViT-B-16"``, ``TINY_CLIP_NAME``).
        context_length: token length; defaults to the model's (77 for CLIP).
        allow_empty: accept ``""`` (padding entries, e.g. from :class:`AddKnowledged`) and return all-zero rows.

    Inputs: a string -> LongTensor ``[context_length]``; a list of N strings -> ``[N, context_length]``.
    Text longer than the context is truncated (ending with the end-of-text token) and a warning says how many tokens
    were dropped. Empty, whitespace-only or non-string text raises :class:`TextInputError`.

    Example::

        tokens = ClipTokenize("ViT-B-16")("Bilateral pulmonary infection, lower lungs.")  # [77]
    """

    # Reports repeat every epoch: each distinct text is tokenized once per process (BPE costs milliseconds per text).
    max_cached_texts = 65536

    def __init__(self, model_name: str = "ViT-B-16", context_length: int | None = None, allow_empty: bool = False):
        self.model_name = model_name
        self.allow_empty = allow_empty
        self._loaded_tokenizer = None
        self._cache: dict[str, torch.Tensor] = {}
        self.context_length = context_length or getattr(self._tokenizer(), "context_length", None) or 77

    def _tokenizer(self):
        if self._loaded_tokenizer is None:
            # Imported here: monai_ext.networks imports the encoders, which import this package.
            self._loaded_tokenizer = get_clip_tokenizer(self.model_name)
        return self._loaded_tokenizer

    def __getstate__(self) -> dict:
        # DataLoader workers receive the transform pickled: they rebuild the tokenizer and their own cache.
        return {**self.__dict__, "_loaded_tokenizer": None, "_cache": {}}

    def _tokenize_one(self, tokenizer, text: str) -> torch.Tensor:
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        row = tokenizer([text], context_length=self.context_length).long()[0]
        encode = getattr(tokenizer, "encode", None)
        count = len(encode(text)) + 2 if callable(encode) else None  # + start/end-of-text
        if count is not None and count > self.context_length:
            logger.warning(
                "Text truncated to %d tokens: %d tokens dropped from %r.",
                self.context_length,
                count - self.context_length,
                text[:80] + ("..." if len(text) > 80 else ""),
            )
        if len(self._cache) < self.max_cached_texts:
            self._cache[text] = row
        return row

    def __call__(self, text: str | Sequence[str]) -> torch.Tensor:
        texts, single = _as_text_list(text, self.allow_empty, f"ClipTokenize({self.model_name})")
        tokenizer = self._tokenizer()
        tokens = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, t in enumerate(texts):
            if t:
                tokens[i] = self._tokenize_one(tokenizer, t)
        return tokens[0] if single else tokens


class ClipTokenized(MapTransform):
    """Dictionary wrapper of :class:`ClipTokenize`: writes the tokens of ``data[key]`` to ``data[output_key]``.

    Args:
        keys: keys holding text (a string or a list of strings).
        output_key: where tokens go (one per key); ``None`` uses ``"<key>_tokens"``.
        model_name, context_length, allow_empty: as in :class:`ClipTokenize`.

    Example::

        ClipTokenized(keys="text", output_key="text_tokens", model_name="ViT-B-16")({"text": "Left lung infection."})
    """

    def __init__(
        self,
        keys: KeysCollection = "text",
        output_key: str | Sequence[str] | None = "text_tokens",
        model_name: str = "ViT-B-16",
        context_length: int | None = None,
        allow_empty: bool = False,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.tokenize = ClipTokenize(model_name, context_length, allow_empty)
        self.output_keys = _output_keys(self.keys, output_key, "_tokens")

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key, out in self.key_iterator(d, self.output_keys):
            d[out] = _tokenize_item(self.tokenize, d, key)
        return d


@lru_cache(maxsize=8)
def _load_hf_tokenizer(path: str, trust_remote_code: bool):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)


class HFTokenize(Transform):
    """Tokenize text with a Hugging Face tokenizer stored in a LOCAL folder (never downloads).

    Args:
        path: folder written by ``tokenizer.save_pretrained`` (e.g. a BioClinicalBERT copy).
        context_length: output length; shorter text is padded (``padding="max_length"``), longer text truncated with
            a warning giving the number of dropped tokens.
        trust_remote_code: allow tokenizer code shipped in the folder (off unless asked).
        allow_empty: accept ``""`` and return an all-padding row (attention mask all zero).
        return_attention_mask: return ``(input_ids, attention_mask)`` instead of ``input_ids`` only.

    Returns: LongTensor ``[context_length]`` for a string, ``[N, context_length]`` for a list.

    Example::

        tokens = HFTokenize("models/bioclinicalbert", context_length=64)("Mild cardiomegaly.")
    """

    def __init__(
        self,
        path: str | os.PathLike,
        context_length: int,
        trust_remote_code: bool = False,
        allow_empty: bool = False,
        return_attention_mask: bool = False,
    ):
        self.path = str(Path(path).expanduser())
        if not Path(self.path).is_dir():
            raise FileNotFoundError(f"Hugging Face tokenizer folder not found: {self.path}")
        if context_length < 2:
            raise ValueError(f"context_length must be >= 2, got {context_length}.")
        self.context_length = int(context_length)
        self.trust_remote_code = trust_remote_code
        self.allow_empty = allow_empty
        self.return_attention_mask = return_attention_mask
        tokenizer = self._tokenizer()
        if tokenizer.pad_token_id is None:
            raise ValueError(f"Tokenizer in {self.path} has no pad token; set one and save it again.")

    def _tokenizer(self):
        try:
            return _load_hf_tokenizer(self.path, self.trust_remote_code)
        except (OSError, ValueError) as err:
            raise ValueError(f"Cannot load a Hugging Face tokenizer from {self.path}: {err}") from err

    def __call__(self, text: str | Sequence[str]):
        texts, single = _as_text_list(text, self.allow_empty, f"HFTokenize({self.path})")
        tokenizer = self._tokenizer()
        encoded = tokenizer(
            texts, padding="max_length", truncation=True, max_length=self.context_length, return_tensors="pt"
        )
        input_ids = encoded["input_ids"].long()
        mask = encoded["attention_mask"].long()
        for i, item in enumerate(texts):
            if not item:
                input_ids[i] = tokenizer.pad_token_id
                mask[i] = 0
                continue
            count = len(tokenizer(item, truncation=False)["input_ids"])
            if count > self.context_length:
                logger.warning(
                    "Text truncated to %d tokens: %d tokens dropped from %r.",
                    self.context_length,
                    count - self.context_length,
                    item[:80] + ("..." if len(item) > 80 else ""),
                )
        if single:
            input_ids, mask = input_ids[0], mask[0]
        return (input_ids, mask) if self.return_attention_mask else input_ids


class HFTokenized(MapTransform):
    """Dictionary wrapper of :class:`HFTokenize`.

    Args:
        keys: keys holding text.
        path, context_length, trust_remote_code, allow_empty: as in :class:`HFTokenize`.
        output_key: where token ids go (one per key); ``None`` uses ``"<key>_tokens"``.
        mask_key: where the attention mask goes (one per key); ``None`` to skip it.

    Example::

        HFTokenized("text", path="models/bioclinicalbert", context_length=64, mask_key="text_mask")
    """

    def __init__(
        self,
        keys: KeysCollection,
        path: str | os.PathLike,
        context_length: int,
        output_key: str | Sequence[str] | None = "text_tokens",
        mask_key: str | Sequence[str] | None = None,
        trust_remote_code: bool = False,
        allow_empty: bool = False,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.tokenize = HFTokenize(path, context_length, trust_remote_code, allow_empty, return_attention_mask=True)
        self.output_keys = _output_keys(self.keys, output_key, "_tokens")
        self.mask_keys = None if mask_key is None else _output_keys(self.keys, mask_key, "_mask")

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        mask_keys = self.mask_keys or [None] * len(self.keys)
        for key, out, mask_out in self.key_iterator(d, self.output_keys, mask_keys):
            ids, mask = _tokenize_item(self.tokenize, d, key)
            d[out] = ids
            if mask_out is not None:
                d[mask_out] = mask
        return d

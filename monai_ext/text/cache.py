"""Cache of frozen text-encoder outputs: each distinct report is encoded once."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import torch

__all__ = ["TextEmbeddingCache"]

CachedValue = torch.Tensor | tuple[torch.Tensor, ...]


class TextEmbeddingCache:
    """In-memory cache of per-item text embeddings, keyed by (encoder id, text or token bytes).

    Only meaningful for frozen encoders, whose output for a given input never changes. Values are stored per item
    (detached), and :meth:`get_or_compute` encodes only the misses of a batch, in one call.

    Args:
        max_entries: keep at most this many items (least recently used evicted first); ``None`` for no limit.

    Example::

        cache = TextEmbeddingCache()
        keys = [cache.make_key("clip-text", row) for row in tokens]
        features = cache.get_or_compute(keys, lambda missing: encoder(tokens[missing]))
    """

    def __init__(self, max_entries: int | None = None) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be None or >= 1, got {max_entries}.")
        self.max_entries = max_entries
        self._store: OrderedDict[Hashable, CachedValue] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def make_key(encoder_id: Hashable, item: str | torch.Tensor) -> tuple:
        """Key of one item: a string, or a token tensor (hashed by dtype, shape and bytes, wherever it lives)."""
        if isinstance(item, str):
            return (encoder_id, "text", item)
        if isinstance(item, torch.Tensor):
            data = item.detach().to("cpu").contiguous()
            return (encoder_id, "tokens", str(data.dtype), tuple(data.shape), data.numpy().tobytes())
        raise TypeError(f"Cache keys are built from str or torch.Tensor, got {type(item).__name__}.")

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._store

    def clear(self) -> None:
        """Drop all entries (counters are kept)."""
        self._store.clear()

    def get_or_compute(self, keys: Sequence[Hashable], compute_fn: Callable[[list[int]], CachedValue]) -> CachedValue:
        """Values for ``keys``, stacked along a new first dimension, computing the missing ones.

        Args:
            keys: one key per item of the batch.
            compute_fn: called once (only if something is missing) with the positions in ``keys`` of the distinct
                missing items; returns a tensor, or a tuple of tensors, whose first dimension matches that list.

        Returns:
            A tensor (or tuple of tensors) with first dimension ``len(keys)``.
        """
        if len(keys) == 0:
            raise ValueError("get_or_compute needs at least one key.")
        missing: dict[Hashable, int] = {}
        for position, key in enumerate(keys):
            if key in self._store:
                self._store.move_to_end(key)
            elif key not in missing:
                missing[key] = position
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        computed: dict[Hashable, CachedValue] = {}
        if missing:
            output = compute_fn(list(missing.values()))
            is_tuple = isinstance(output, tuple)
            parts = output if is_tuple else (output,)
            for part in parts:
                if part.shape[0] != len(missing):
                    raise ValueError(
                        f"compute_fn returned first dimension {part.shape[0]} for {len(missing)} missing items."
                    )
            for index, key in enumerate(missing):
                item = tuple(part[index].detach() for part in parts)
                computed[key] = item if is_tuple else item[0]
        values = [computed[key] if key in computed else self._store[key] for key in keys]
        for key, value in computed.items():
            self._store[key] = value
        if self.max_entries is not None:
            while len(self._store) > self.max_entries:
                self._store.popitem(last=False)
        if isinstance(values[0], tuple):
            return tuple(torch.stack(group) for group in zip(*values))
        return torch.stack(values)

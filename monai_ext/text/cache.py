"""Cache of frozen text-encoder outputs: each distinct text is encoded once, within a bound in bytes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import torch

__all__ = ["TextEmbeddingCache"]

CachedValue = torch.Tensor | tuple[torch.Tensor, ...]


def _value_bytes(value: CachedValue) -> int:
    parts = value if isinstance(value, tuple) else (value,)
    return sum(part.numel() * part.element_size() for part in parts)


def _key_bytes(key: Hashable) -> int:
    """Bytes of the key's payload (its last part: the token bytes or the text), held as long as the entry; the
    encoder id before it is shared by all entries."""
    payload = key[-1] if isinstance(key, tuple) and key else key
    return len(payload) if isinstance(payload, (bytes, str)) else 0


class TextEmbeddingCache:
    """Least-recently-used cache of per-item text embeddings, bounded in bytes.

    Only meaningful for frozen encoders, whose output for a given input never changes. The caller stores per item
    exactly what it will read (e.g. the token features up to the end of the text, in the compute dtype), as tensors
    that own their memory: a slice of a batch tensor would keep the whole batch alive and the bound would be a lie.

    The bound counts the stored tensors' bytes plus each key's payload (its last part: token bytes or text); when an
    insertion passes it, the least recently used entries go first. An entry larger than the bound on its own is not
    kept. Counters of hits and misses run until :meth:`reset_counters` (the per-epoch statistics of
    :class:`monai_ext.handlers.TextCacheStatsHandler`).

    Args:
        max_bytes: bound on the bytes held; ``None`` for no bound.

    Example::

        cache = TextEmbeddingCache(max_bytes=64 * 2**20)
        keys = [cache.make_key("clip-text", row) for row in host_tokens]
        values = cache.get_or_compute(keys, lambda missing: [encode(host_tokens[i]) for i in missing])
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        if max_bytes is not None and (isinstance(max_bytes, bool) or int(max_bytes) != max_bytes or max_bytes < 1):
            raise ValueError(f"max_bytes must be None or a positive number of bytes, got {max_bytes!r}.")
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self._store: OrderedDict[Hashable, CachedValue] = OrderedDict()
        self._entry_bytes: dict[Hashable, int] = {}
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    @staticmethod
    def make_key(encoder_id: Hashable, item: str | torch.Tensor) -> tuple:
        """Key of one item: a string, or a token tensor (hashed by dtype, shape and bytes).

        A tensor on an accelerator is copied to the host first, which waits for the device: build keys from the
        tokens the data loader made, before they are moved (the networks of this package do).
        """
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
        self._entry_bytes.clear()
        self.nbytes = 0

    def reset_counters(self) -> None:
        """Start counting hits, misses and evictions anew (entries are kept)."""
        self.hits = self.misses = self.evictions = 0

    def stats(self) -> dict[str, float | int | None]:
        """Entries, bytes held, the bound, and hits / misses / evictions since the last :meth:`reset_counters`."""
        lookups = self.hits + self.misses
        return {
            "entries": len(self._store),
            "bytes": self.nbytes,
            "max_bytes": self.max_bytes,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "hit_rate": self.hits / lookups if lookups else None,
        }

    def _put(self, key: Hashable, value: CachedValue) -> None:
        size = _value_bytes(value) + _key_bytes(key)
        if self.max_bytes is not None and size > self.max_bytes:
            return
        self._store[key] = value
        self._entry_bytes[key] = size
        self.nbytes += size
        while self.max_bytes is not None and self.nbytes > self.max_bytes:
            old_key, _ = self._store.popitem(last=False)
            self.nbytes -= self._entry_bytes.pop(old_key)
            self.evictions += 1

    def get_or_compute(
        self, keys: Sequence[Hashable], compute_fn: Callable[[list[int]], Sequence[CachedValue]]
    ) -> list[CachedValue]:
        """Values for ``keys`` (one per key, in order), computing the missing ones.

        Args:
            keys: one key per item of the batch.
            compute_fn: called once (only if something is missing) with the positions in ``keys`` of the distinct
                missing items; returns one value per position (a tensor or a tuple of tensors), which the cache stores
                as given.

        Returns:
            A list of ``len(keys)`` values; a key that occurs twice gets the same value twice.
        """
        if len(keys) == 0:
            raise ValueError("get_or_compute needs at least one key.")
        missing: dict[Hashable, int] = {}
        found: dict[Hashable, CachedValue] = {}
        for position, key in enumerate(keys):
            if key in found or key in missing:
                continue
            if key in self._store:
                self._store.move_to_end(key)
                found[key] = self._store[key]
            else:
                missing[key] = position
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        if missing:
            computed = list(compute_fn(list(missing.values())))
            if len(computed) != len(missing):
                raise ValueError(f"compute_fn returned {len(computed)} values for {len(missing)} missing items.")
            for key, value in zip(missing, computed):
                found[key] = value
                self._put(key, value)
        return [found[key] for key in keys]

"""Dictionary transforms that route text through pipelines built for images only (MONAI Label's requests and
datastore items): a default prompt where an item has none, and tokens carried in the image's ``MetaTensor.meta``."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

__all__ = ["DefaultTextd", "TokensToMetad"]


class DefaultTextd(MapTransform):
    """Fill a missing (or ``None``) text entry with a default prompt; an existing entry is left as it is.

    An empty string is *not* replaced: it still fails in tokenization, as a report that was given but is empty.

    Args:
        keys: entries holding the text, usually ``"text"``.
        default: the prompt used when the entry is missing, e.g. the bundle's ``default_prompt``.

    Example::

        DefaultTextd(keys="text", default="Pulmonary infection in the lungs.")({"image": "a.png"})["text"]
    """

    def __init__(self, keys: KeysCollection = "text", default: str = ""):
        super().__init__(keys, allow_missing_keys=True)
        if not isinstance(default, str) or not default.strip():
            raise ValueError(f"default must be a non-empty string, got {default!r}.")
        self.default = default

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.keys:
            if d.get(key) is None:
                d[key] = self.default
        return d


class TokensToMetad(MapTransform):
    """Copy entries (e.g. ``text_tokens``, ``knowledge_tokens``) into ``data[image_key].meta`` under the same names.

    Args:
        keys: entries to copy; missing ones are skipped.
        image_key: the ``MetaTensor`` that carries them.
    """

    def __init__(self, keys: KeysCollection = ("text_tokens", "knowledge_tokens"), image_key: str = "image"):
        super().__init__(keys, allow_missing_keys=True)
        self.image_key = image_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.image_key]
        if not isinstance(image, MetaTensor):
            image = MetaTensor(image)
            d[self.image_key] = image
        for key in self.key_iterator(d):
            image.meta[key] = d[key]
        return d

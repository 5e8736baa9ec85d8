"""Batch preparation for MONAI's engines when the network reads text: the text inputs stay on the host."""

from __future__ import annotations

from typing import Any

import torch
from monai.engines import PrepareBatchExtraInput, default_prepare_batch

__all__ = ["PrepareBatchTextInput"]


class PrepareBatchTextInput(PrepareBatchExtraInput):
    """MONAI's ``PrepareBatchExtraInput``, except that the extra inputs (report tokens) are passed as the data loader
    made them, on the host; image and label go to the device as usual.

    The networks of this package key their frozen text encoder's cache from the tokens and encode only texts they have
    not seen; keyed on the host, a batch needs no device-to-host copy, which would make every step wait for the GPU.
    The networks move what they encode to their own device. A network that needs its extra inputs on the device (not
    one of this package's) wants MONAI's ``PrepareBatchExtraInput``.

    Args:
        extra_keys: as ``PrepareBatchExtraInput``: a key or keys (extra positional arguments) or
            ``{forward keyword: batch key}``.

    Example (a bundle config)::

        "prepare_batch": {"_target_": "monai_ext.engines.PrepareBatchTextInput",
                          "extra_keys": {"text_tokens": "text_tokens", "knowledge_tokens": "knowledge_tokens"}}
    """

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        image, label = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        # MONAI's own reading of extra_keys; without a device it moves nothing (`.to(device=None)` is the tensor).
        _, _, args, extra = super().__call__(batchdata)
        return image, label, args, extra

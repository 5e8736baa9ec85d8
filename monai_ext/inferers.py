"""Inferers for text-guided networks: the extra inputs (report tokens) travel with the image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import SimpleInferer, SliceInferer

__all__ = ["MetaInputInferer", "TextSliceInferer"]


class MetaInputInferer(SimpleInferer):
    """``SimpleInferer`` that also passes extra network inputs found in the input's ``MetaTensor.meta``.

    Keyword arguments given by the caller win; entries of ``meta_keys`` missing from both are not passed (the network's
    default applies, e.g. TGC-Net's ``default_prompt``). A value without a batch dimension (``ndim`` below
    ``expected_ndim``) gets one. Values stay on the host (see :class:`monai_ext.engines.PrepareBatchTextInput`).

    Args:
        meta_keys: meta entries to pass, as ``{meta key: network keyword}``.
        expected_ndim: ``{network keyword: ndim with batch}``; defaults to 2 for ``text_tokens`` ``[B, L]`` and 3 for
            ``knowledge_tokens`` ``[B, K, L]``.
    """

    def __init__(
        self,
        meta_keys: Mapping[str, str] | Sequence[str] = ("text_tokens", "knowledge_tokens"),
        expected_ndim: Mapping[str, int] | None = None,
    ):
        super().__init__()
        self.meta_keys = dict(meta_keys) if isinstance(meta_keys, Mapping) else {k: k for k in meta_keys}
        self.expected_ndim = dict(expected_ndim) if expected_ndim else {"text_tokens": 2, "knowledge_tokens": 3}

    def __call__(self, inputs: torch.Tensor, network, *args: Any, **kwargs: Any):
        if isinstance(inputs, MetaTensor):
            for meta_key, arg in self.meta_keys.items():
                if arg in kwargs or meta_key not in inputs.meta:
                    continue
                value = inputs.meta[meta_key]
                value = torch.as_tensor(value.as_tensor() if isinstance(value, MetaTensor) else value)
                ndim = self.expected_ndim.get(arg)
                if ndim is not None and value.ndim == ndim - 1:
                    value = value.unsqueeze(0)
                # Left on the host: the networks key their text cache there and move what they encode themselves.
                kwargs[arg] = value
        return super().__call__(inputs, network, *args, **kwargs)


class TextSliceInferer(SliceInferer):
    """MONAI's ``SliceInferer`` (a 2D network over the slices of a volume) that also hands the network its other
    inputs, such as the report's ``text_tokens``, on every slice batch.

    MONAI 1.6's ``SliceInferer`` passes only ``condition`` on to the network and drops other arguments without a word,
    so a text-guided network would segment every slice with its default prompt. Inputs without a slice dimension
    (tokens ``[B, L]``) are passed as they are; the networks repeat a batch of one over the slices.

    Inputs: ``inputs [B, C, H, W, D]``, ``network``, then the network's extra inputs as keyword arguments.
    Output: the network's output stacked back along the sliced axis, ``[B, C_out, H, W, D]``.

    Example::

        inferer = TextSliceInferer(roi_size=(-1, -1), spatial_dim=2, sw_batch_size=4)
        logits = inferer(volume, tgcnet, text_tokens=tokens)
    """

    def __call__(self, inputs: torch.Tensor, network, *args: Any, **kwargs: Any):
        condition = kwargs.pop("condition", None)

        def with_inputs(slices: torch.Tensor, *slice_args: Any, **slice_kwargs: Any):
            return network(slices, *slice_args, *args, **slice_kwargs, **kwargs)

        if condition is None:
            return super().__call__(inputs, with_inputs)
        return super().__call__(inputs, with_inputs, condition=condition)

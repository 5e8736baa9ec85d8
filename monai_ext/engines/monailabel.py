"""Pieces that let the bundles run inside MONAI Label's ``monaibundle`` app (``BundleInferTask``, ``BundleTrainTask``).

MONAI Label (0.8.x) runs a bundle's inference outside of its evaluator:

* the request (e.g. ``{"image": <path>, "text": "...", "device": "cpu"}``) is the data dictionary that goes through
  the transforms of ``pre_transforms`` (or ``preprocessing``) of ``configs/inference.json``; keys such as ``device``,
  ``model``, ``model_filename`` or ``result_extension`` ride along;
* the network is then called as ``inferer(data["image"][None], network)``: the image is the only input.

A text-guided network also needs the report's tokens. :class:`DefaultTextd` gives a request without ``text`` the
bundle's ``default_prompt``; :class:`TokensToMetad` copies the tokens made by the pre-transforms into the image's
``MetaTensor.meta``, which travels with the image tensor; :class:`MetaInputInferer` (the bundle's ``inferer``) hands
them to the network as keyword arguments, unless the caller (the bundle's own evaluator with
``PrepareBatchExtraInput``) passes them already.

For training MONAI Label's datastore gives items with ``image`` and ``label`` only, so TGC-Net's training transforms
start with :class:`monai_ext.text.SidecarReportd` (the report written beside the image, ``case_001.txt``) and
:class:`DefaultTextd` (the default prompt for images without one); its inference ``pre_transforms`` do the same for a
request without ``text``.

:func:`prepare_app_bundle` copies a bundle into ``<app>/model/<name>`` (where the ``monaibundle`` app looks for local
bundles), optionally with a checkpoint and with config overrides written into ``inference.json`` / ``train.json``
(MONAI Label reads only those two files, it cannot stack configs).

Nothing here imports MONAI Label.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Union

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.inferers import SimpleInferer
from monai.transforms import MapTransform

__all__ = ["DefaultTextd", "TokensToMetad", "MetaInputInferer", "prepare_app_bundle"]


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


class MetaInputInferer(SimpleInferer):
    """``SimpleInferer`` that also passes extra network inputs found in the input's ``MetaTensor.meta``.

    Keyword arguments given by the caller win; entries of ``meta_keys`` missing from both are not passed (the network's
    default applies, e.g. TGC-Net's ``default_prompt``). A value without a batch dimension (``ndim`` below
    ``expected_ndim``) gets one.

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
                kwargs[arg] = value.to(inputs.device)
        return super().__call__(inputs, network, *args, **kwargs)


_SKIP = ("runs", "eval", "predictions", "demo_data", "__pycache__")

Overrides = Union[Mapping[str, Any], str, os.PathLike, Sequence[Union[Mapping[str, Any], str, os.PathLike]]]


def _write_overrides(path: str, overrides: Overrides | None) -> None:
    """Set ``#``-separated config ids in the JSON file ``path`` from dicts or JSON files, applied in order."""
    if not overrides:
        return
    layers = [overrides] if isinstance(overrides, (Mapping, str, os.PathLike)) else list(overrides)
    with open(path) as f:
        content = json.load(f)
    for layer in layers:
        if isinstance(layer, (str, os.PathLike)):
            with open(layer) as f:
                layer = json.load(f)
        for key, value in layer.items():
            node = content
            parts = str(key).split("#")
            for part in parts[:-1]:
                node = node[int(part)] if isinstance(node, list) else node[part]
            if isinstance(node, list):
                node[int(parts[-1])] = value
            else:
                node[parts[-1]] = value
    with open(path, "w") as f:
        json.dump(content, f, indent=4)


def prepare_app_bundle(
    bundle_dir: str,
    app_dir: str,
    name: str | None = None,
    checkpoint: str | None = None,
    inference_overrides: Overrides | None = None,
    train_overrides: Overrides | None = None,
    metadata_overrides: Overrides | None = None,
    overwrite: bool = False,
    copy_models: bool = True,
) -> str:
    """Copy a bundle to ``<app_dir>/model/<name>``, where MONAI Label's ``monaibundle`` app finds local bundles.

    Args:
        bundle_dir: the bundle folder (e.g. ``bundles/tgcnet``).
        app_dir: the ``monaibundle`` app folder (``monailabel apps --download --name monaibundle --output apps``).
        name: bundle name in the app (``--conf models <name>``); the folder name of ``bundle_dir`` by default.
        checkpoint: weights copied to ``models/model.pt`` (``BundleInferTask`` needs ``models/model.pt`` or
            ``models/model.ts``).
        inference_overrides, train_overrides: config ids to set in ``configs/inference.json`` /
            ``configs/train.json``: a dict, the path of a JSON file with one (e.g. ``configs/demo_inference.json``), or
            a list of these applied in order (MONAI Label cannot stack configs, so the copy holds the result).
        metadata_overrides: the same for ``configs/metadata.json``, where MONAI Label reads the label names
            (``network_data_format#outputs#pred#channel_def``), e.g. ``configs/cardiac_metadata.json``.
        overwrite: replace an existing ``<app_dir>/model/<name>``.
        copy_models: copy the bundle's ``models/`` folder (weights trained in place); ``False`` starts without it.

    Returns:
        the bundle's folder in the app.
    """
    bundle_dir = os.path.abspath(bundle_dir)
    name = name or os.path.basename(bundle_dir.rstrip(os.sep))
    target = os.path.join(os.path.abspath(app_dir), "model", name)
    if os.path.exists(target):
        if not overwrite:
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it.")
        shutil.rmtree(target)
    skip = _SKIP if copy_models else (*_SKIP, "models")
    shutil.copytree(bundle_dir, target, ignore=lambda d, names: [n for n in names if d == bundle_dir and n in skip])
    for config, overrides in (
        ("inference.json", inference_overrides),
        ("train.json", train_overrides),
        ("metadata.json", metadata_overrides),
    ):
        _write_overrides(os.path.join(target, "configs", config), overrides)
    if checkpoint:
        os.makedirs(os.path.join(target, "models"), exist_ok=True)
        shutil.copyfile(checkpoint, os.path.join(target, "models", "model.pt"))
    return target


if __name__ == "__main__":
    import fire

    from monai_ext.utils.flags import checked_flags

    fire.Fire({"prepare": checked_flags(prepare_app_bundle)})

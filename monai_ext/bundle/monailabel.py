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

Nothing here imports MONAI Label."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any, Union

__all__ = ["Overrides", "prepare_app_bundle"]


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

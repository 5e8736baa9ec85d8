"""Pieces that let the bundles run in MONAI Label (0.8.x): the app of ``monailabel_app/main.py`` with the bundles
copied into it.

MONAI Label runs a bundle's inference outside of its evaluator:

* the request (e.g. ``{"image": <path>, "text": "...", "device": "cpu"}``), merged over the model's displayed config
  (``displayable_configs``), is the data dictionary that goes through the transforms of ``pre_transforms`` (or
  ``preprocessing``) of ``configs/inference.json``; keys such as ``device``, ``model``, ``model_filename`` or
  ``result_extension`` ride along;
* the network is then called as ``inferer(data["image"][None], network)``: the image is the only input.

A text-guided network also needs the report's tokens. TGC-Net displays ``text`` as ``null``, so that a request without
one reaches :class:`monai_ext.text.SidecarReportd` (the report file beside the image, ``case_001.txt``), then
:class:`monai_ext.text.DefaultTextd` (the bundle's ``default_prompt``); :class:`monai_ext.text.TokensToMetad` copies
the tokens made by the pre-transforms into the image's ``MetaTensor.meta``, which travels with the image tensor;
:class:`monai_ext.inferers.MetaInputInferer` (the bundle's ``inferer``) hands them to the network as keyword
arguments, unless the caller (the bundle's own evaluator with ``PrepareBatchExtraInput``) passes them already.

For training MONAI Label's datastore gives items with ``image`` and ``label`` only, so TGC-Net's training transforms
start with ``SidecarReportd`` and ``DefaultTextd`` as well.

:func:`prepare_app_bundle` copies a bundle into ``<app>/model/<name>`` (where the app looks for bundles), optionally
with a checkpoint and with config overrides written into ``inference.json`` / ``train.json`` / ``metadata.json``
(MONAI Label reads only those, it cannot stack configs), and writes the app's ``main.py`` into a new app folder.
Everything is checked before anything is written, and the bundle folder appears complete or not at all.

Nothing here imports MONAI Label; ``monailabel_app/main.py`` does, and runs only in MONAI Label's environment
(``scripts/install_monailabel.sh``)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, Union

from monai_ext.io import atomic_write_text

__all__ = ["APP_MAIN", "Overrides", "prepare_app_bundle"]


_SKIP = ("runs", "eval", "predictions", "demo_data", "__pycache__")
_CONFIGS = ("inference.json", "train.json", "metadata.json")
APP_MAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "monailabel_app", "main.py")
"""The MONAI Label app (``main.py``) that serves the bundles."""


Overrides = Union[Mapping[str, Any], str, os.PathLike, Sequence[Union[Mapping[str, Any], str, os.PathLike]]]


def _override_layers(overrides: Overrides | None, bundle_dir: str) -> list[tuple[str, Mapping[str, Any]]]:
    """(where from, dict) for each layer; a relative file is looked up in the current folder, then in the bundle."""
    if not overrides:
        return []
    layers = [overrides] if isinstance(overrides, (Mapping, str, os.PathLike)) else list(overrides)
    loaded = []
    for layer in layers:
        if isinstance(layer, Mapping):
            loaded.append(("the overrides given", layer))
            continue
        path = os.fspath(layer)
        candidates = [path] if os.path.isabs(path) else [os.path.abspath(path), os.path.join(bundle_dir, path)]
        found = next((c for c in candidates if os.path.isfile(c)), None)
        if found is None:
            raise FileNotFoundError(f"Override file '{path}' not found (looked for {' and '.join(candidates)}).")
        try:
            with open(found, encoding="utf-8") as f:
                content = json.load(f)
        except ValueError as e:  # also UnicodeDecodeError
            raise ValueError(f"Override file '{found}' is not JSON: {e}") from e
        if not isinstance(content, Mapping):
            raise ValueError(f"Override file '{found}' holds a {type(content).__name__}, expected an object of ids.")
        loaded.append((found, content))
    return loaded


def _apply(content: Any, layers: list[tuple[str, Mapping[str, Any]]], config: str) -> Any:
    """Set the ``#``-separated ids of each layer in ``content``, in order; an id whose parent is missing is refused."""
    for source, layer in layers:
        for key, value in layer.items():
            node = content
            parts = str(key).split("#")
            try:
                for part in parts[:-1]:
                    node = node[int(part)] if isinstance(node, list) else node[part]
                if isinstance(node, list):
                    node[int(parts[-1])] = value
                elif isinstance(node, dict):
                    node[parts[-1]] = value
                else:
                    raise TypeError(f"'{'#'.join(parts[:-1])}' is a {type(node).__name__}")
            except (KeyError, IndexError, ValueError, TypeError) as e:
                raise ValueError(f"Override '{key}' (from {source}) does not fit configs/{config}: {e!r}") from e
    return content


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
    """Copy a bundle to ``<app_dir>/model/<name>`` and, for a new app folder, write the app (``<app_dir>/main.py``).

    Start the server with ``monailabel start_server --app <app_dir> --studies <images> --conf models <name>``.
    All inputs are checked first (override files and ids, checkpoint, an existing target); the bundle is then
    assembled in a hidden folder beside the target and moved into place, so a failure leaves nothing behind.

    Args:
        bundle_dir: the bundle folder (e.g. ``bundles/tgcnet``).
        app_dir: the app folder; created with the app's ``main.py`` when it has none (an existing ``main.py`` is
            kept).
        name: bundle name in the app (``--conf models <name>``); the folder name of ``bundle_dir`` by default.
        checkpoint: weights copied to ``models/model.pt`` (the app serves a bundle with ``models/model.pt`` or
            ``models/model.ts`` only).
        inference_overrides, train_overrides: config ids to set in ``configs/inference.json`` /
            ``configs/train.json``: a dict, the path of a JSON file with one (relative paths are looked up in the
            current folder, then in ``bundle_dir``: ``configs/demo_inference.json``), or a list of these applied in
            order (MONAI Label cannot stack configs, so the copy holds the result).
        metadata_overrides: the same for ``configs/metadata.json``, where MONAI Label reads the label names
            (``network_data_format#outputs#pred#channel_def``), e.g. ``configs/cardiac_metadata.json``.
        overwrite: replace an existing ``<app_dir>/model/<name>``.
        copy_models: copy the bundle's ``models/`` folder (weights trained in place); ``False`` starts without it.

    Returns:
        the bundle's folder in the app.

    Raises:
        FileNotFoundError: the bundle, one of its configs, an override file or the checkpoint is missing.
        ValueError: an override file is not a JSON object, or one of its ids does not fit the config.
        FileExistsError: the target exists and ``overwrite`` is off.
    """
    bundle_dir = os.path.abspath(bundle_dir)
    name = name or os.path.basename(bundle_dir.rstrip(os.sep))
    app_dir = os.path.abspath(app_dir)
    target = os.path.join(app_dir, "model", name)
    configs = {}
    for config, overrides in zip(_CONFIGS, (inference_overrides, train_overrides, metadata_overrides)):
        path = os.path.join(bundle_dir, "configs", config)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Bundle '{bundle_dir}' has no configs/{config}.")
        with open(path, encoding="utf-8") as f:
            configs[config] = _apply(json.load(f), _override_layers(overrides, bundle_dir), config)
    if checkpoint and not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"Checkpoint file '{checkpoint}' does not exist.")
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it.")

    os.makedirs(os.path.dirname(target), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=os.path.dirname(target))
    try:
        copy = os.path.join(staging, name)
        skip = _SKIP if copy_models else (*_SKIP, "models")
        shutil.copytree(bundle_dir, copy, ignore=lambda d, names: [n for n in names if d == bundle_dir and n in skip])
        for config, content in configs.items():
            with open(os.path.join(copy, "configs", config), "w", encoding="utf-8") as f:
                json.dump(content, f, indent=4)
        if checkpoint:
            os.makedirs(os.path.join(copy, "models"), exist_ok=True)
            shutil.copyfile(checkpoint, os.path.join(copy, "models", "model.pt"))
        if os.path.exists(target):
            os.replace(target, os.path.join(staging, "replaced"))
        os.replace(copy, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not os.path.exists(os.path.join(app_dir, "main.py")):
        with open(APP_MAIN, encoding="utf-8") as f:
            atomic_write_text(os.path.join(app_dir, "main.py"), f.read())
    return target

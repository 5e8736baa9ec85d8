"""A bundle's configs read as ``python -m monai.bundle run`` reads them, and its network built and loaded from them."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose, LoadImaged, MapTransform
from monai_ext.checkpoint import BUNDLE_WEIGHTS_HINT, load_state_dict_checked
from monai_ext.data.readers import CheckedLoadImaged

__all__ = [
    "flatten_transforms",
    "is_image_loader",
    "resolve_config",
    "bundle_parser",
    "default_checkpoint",
    "load_bundle_network",
    "network_input_keys",
    "text_only_transforms",
]


def resolve_config(bundle_dir: str, name: str) -> str:
    """A config path as given if it exists, else relative to the bundle folder, else to ``<bundle>/configs``."""
    for candidate in (name, os.path.join(bundle_dir, name), os.path.join(bundle_dir, "configs", name)):
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise FileNotFoundError(f"Config file '{name}' not found (also looked in {bundle_dir} and {bundle_dir}/configs).")


def bundle_parser(
    bundle_dir: str,
    config_files: str | Sequence[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    base_config: str = "configs/inference.json",
) -> ConfigParser:
    """A :class:`ConfigParser` holding ``base_config`` merged with ``config_files`` (in order), the bundle's metadata
    (``_meta_``), ``bundle_root`` set to the bundle folder and ``overrides`` (``{"id#sub": value}``) applied last.

    Example::

        parser = bundle_parser("bundles/tgcnet", ["configs/demo_inference.json"], {"use_knowledge": False})
        net = parser.get_parsed_content("network_def")
    """
    bundle_dir = os.path.abspath(bundle_dir)
    if not os.path.isdir(bundle_dir):
        raise FileNotFoundError(f"Bundle folder '{bundle_dir}' does not exist.")
    extra = [config_files] if isinstance(config_files, str) else list(config_files or [])
    files = [resolve_config(bundle_dir, name) for name in [base_config, *extra]]
    parser = ConfigParser()
    parser.read_config(files)
    meta = os.path.join(bundle_dir, "configs", "metadata.json")
    if os.path.isfile(meta):
        parser.read_meta(meta)
    parser["bundle_root"] = bundle_dir
    for key, value in (overrides or {}).items():
        parser[key] = value
    if "flag_check" in parser:
        # The switch check a bundle run makes in `initialize`, for callers that build components without running it.
        parser.get_parsed_content("flag_check")
    return parser


def default_checkpoint(parser: ConfigParser) -> str:
    """``<ckpt_dir>/model.pt`` of the bundle config (``<bundle>/models/model.pt`` by default)."""
    ckpt_dir = (
        parser.get_parsed_content("ckpt_dir") if "ckpt_dir" in parser else os.path.join(parser["bundle_root"], "models")
    )
    return os.path.join(ckpt_dir, "model.pt")


def load_bundle_network(
    parser: ConfigParser,
    checkpoint: str | None = None,
    device: str | torch.device = "cpu",
    net_id: str = "network_def",
    strict: bool = True,
) -> torch.nn.Module:
    """Build ``net_id`` from the config, load ``checkpoint`` (default: :func:`default_checkpoint`) safely, eval mode.

    Raises:
        monai_ext.checkpoint.CheckpointError: the checkpoint is missing, corrupt, pickles code or does not fit.
    """
    network = parser.get_parsed_content(net_id)
    load_state_dict_checked(
        network, checkpoint or default_checkpoint(parser), strict=strict, missing_hint=BUNDLE_WEIGHTS_HINT
    )
    return network.to(device).eval()


def network_input_keys(parser: ConfigParser, preprocessed: Mapping | None = None, image_key: str = "image") -> dict:
    """Extra network inputs as ``{forward keyword: item key}``.

    Read from ``prepare_batch#extra_keys`` (MONAI ``PrepareBatchExtraInput``: a dict, a list or one key); without it,
    from the metadata's ``network_data_format#inputs`` other than the image (kept when present in ``preprocessed``).
    """
    config = parser.get("prepare_batch")
    extra = config.get("extra_keys") if isinstance(config, Mapping) else None
    if isinstance(extra, Mapping):
        return {str(k): str(v) for k, v in extra.items()}
    if isinstance(extra, str):
        return {extra: extra}
    if isinstance(extra, Sequence):
        return {str(k): str(k) for k in extra}
    inputs = parser.get("_meta_#network_data_format#inputs", {}) or {}
    names = [name for name in inputs if name != image_key]
    if preprocessed is not None:
        names = [name for name in names if name in preprocessed]
    return {name: name for name in names}


def flatten_transforms(preprocessing: Any) -> list:
    """The transforms of a ``Compose`` (nested ones flattened), a list, or one transform, as a list."""
    if isinstance(preprocessing, Compose):
        return list(preprocessing.flatten().transforms)
    if isinstance(preprocessing, Sequence):
        return list(preprocessing)
    return [preprocessing]


def is_image_loader(transform: Any) -> bool:
    """Whether ``transform`` loads images from files (MONAI's ``LoadImaged`` or the checked loader)."""
    return isinstance(transform, (LoadImaged, CheckedLoadImaged))


def _keys(transform: Any) -> tuple:
    return tuple(getattr(transform, "keys", ()) or ())


def text_only_transforms(preprocessing: Any, image_key: str = "image") -> Compose:
    """The dictionary transforms of ``preprocessing`` that do not touch the image (report -> knowledge -> tokens)."""
    selected = [
        t
        for t in flatten_transforms(preprocessing)
        if isinstance(t, MapTransform) and not is_image_loader(t) and image_key not in _keys(t)
    ]
    return Compose(selected)

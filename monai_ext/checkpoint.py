"""The one safe checkpoint reader: bundle weights, trainer states and CLIP weights all load through it.

Checkpoints are read with ``torch.load(weights_only=True)`` (no code runs while unpickling) and the usual failures
(missing file, truncated download, a pickle of Python objects, a checkpoint of another network) become
:class:`CheckpointError` with a message naming the file and the problem.
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import re
from collections.abc import Collection, Mapping
from typing import Any

import torch

__all__ = [
    "BUNDLE_WEIGHTS_HINT",
    "STATE_DICT_KEYS",
    "CheckpointError",
    "CheckpointNotFoundError",
    "extract_state_dict",
    "load_state_dict_checked",
    "safe_torch_load",
    "strip_wrapper_prefix",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

# Keys under which a checkpoint dict may hold the network's weights (MONAI CheckpointSaver / bundle conventions).
STATE_DICT_KEYS = ("model", "state_dict", "network", "net", "model_state_dict")


class CheckpointError(ValueError):
    """A checkpoint file cannot be used: corrupt, not a plain state dict, or made for another network."""


# Said when a bundle's own checkpoint is missing: nothing is downloaded, and the bundles ship no trained weights.
BUNDLE_WEIGHTS_HINT = (
    "No weights ship with the bundles: train first (train.json writes <ckpt_dir>/model.pt), or point --ckpt_dir "
    "(predict.py: --checkpoint) at the folder or file that holds them."
)


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist (catchable as both :class:`CheckpointError` and ``FileNotFoundError``).

    Args:
        path: the missing file; ``filename`` and ``errno`` are set as for ``FileNotFoundError``.
        hint: a sentence appended to the message, e.g. how to get the file.
    """

    def __init__(self, path: PathLike, hint: str = ""):
        path = os.fspath(path)
        message = f"Checkpoint file '{path}' does not exist." + (f" {hint}" if hint else "")
        super().__init__(path, hint)
        self.errno, self.strerror, self.filename = errno.ENOENT, message, path

    def __str__(self) -> str:
        return self.strerror


def _describe_unpickling_error(path: str, error: Exception) -> str:
    message = str(error)
    needs_code = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    if needs_code or "This file can still be loaded" in message:
        what = f" (it stores a '{needs_code.group(1)}' object)" if needs_code else ""
        return (
            f"Checkpoint '{path}' is not a plain state dict/checkpoint{what}: loading it would run code from a pickle, "
            "which weights_only loading refuses. Re-save it from trusted code as "
            "torch.save({'model': network.state_dict()}, path)."
        )
    return f"Checkpoint '{path}' is not a PyTorch checkpoint or is corrupt (unreadable pickle data)."


def safe_torch_load(path: PathLike, map_location: str | torch.device | None = "cpu", missing_hint: str = "") -> Any:
    """``torch.load(path, map_location, weights_only=True)`` with clear errors.

    Only tensors and plain containers (dict, list, tuple, str, numbers) load; nothing in the file can run code.

    Args:
        missing_hint: a sentence added to the error when the file does not exist, e.g. :data:`BUNDLE_WEIGHTS_HINT`.

    Raises:
        CheckpointNotFoundError: the file does not exist (also a ``FileNotFoundError``).
        CheckpointError: a folder, an empty/truncated/corrupt file, or a pickle of Python objects (a whole ``nn.Module``,
            custom classes) that is not a plain state dict/checkpoint.

    Example::

        state = safe_torch_load("models/model.pt")
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointNotFoundError(path, hint=missing_hint)
    if os.path.isdir(path):
        raise CheckpointError(f"Checkpoint path '{path}' is a folder, expected a file written by torch.save.")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"Checkpoint '{path}' is empty (0 bytes): the save or download did not complete.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(_describe_unpickling_error(path, e)) from e
    except PermissionError:
        raise
    except (RuntimeError, EOFError, KeyError, IndexError, UnicodeDecodeError, OSError) as e:
        # Truncated zip archives raise RuntimeError (miniz) or OSError (newer torch), short legacy files EOFError, text
        # files KeyError or IndexError (the unpickler's mark stack).
        raise CheckpointError(
            f"Checkpoint '{path}' is corrupt or truncated, or not a torch.save file ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no detail'}). Re-download or re-save it."
        ) from e


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) > 0 and all(isinstance(v, torch.Tensor) for v in value.values())


def extract_state_dict(checkpoint: Mapping[str, Any], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The network weights of a checkpoint: a plain state dict, or the entry under one of ``STATE_DICT_KEYS``
    (``{"model": state_dict, "optimizer": ...}`` as MONAI's CheckpointSaver writes with several objects).

    Raises:
        CheckpointError: no state dict found; the message lists the top-level keys.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(
            f"{source} holds a {type(checkpoint).__name__}, expected a state dict or checkpoint dict."
        )
    if _is_state_dict(checkpoint):
        return dict(checkpoint)
    for key in STATE_DICT_KEYS:
        if _is_state_dict(checkpoint.get(key)):
            return dict(checkpoint[key])
    keys = ", ".join(sorted(map(str, checkpoint))[:10]) or "none"
    raise CheckpointError(
        f"{source} contains no network weights: expected a state dict (name -> tensor) or a dict with one under "
        f"{list(STATE_DICT_KEYS)}; its top-level keys are: {keys}."
    )


def _checkpoint_network_name(checkpoint: Mapping[str, Any]) -> str | None:
    for key in ("network", "network_name", "arch"):
        if isinstance(checkpoint.get(key), str):
            return checkpoint[key]
    return None


def strip_wrapper_prefix(
    state_dict: Mapping[str, torch.Tensor], expected_keys: Collection[str] = (), prefix: str = "module."
) -> dict[str, torch.Tensor]:
    """Remove a wrapper prefix (``module.`` of DataParallel/DistributedDataParallel) carried by every key, unless the
    target's own keys (``expected_keys``) have it too."""
    if (
        state_dict
        and all(k.startswith(prefix) for k in state_dict)
        and not any(k.startswith(prefix) for k in expected_keys)
    ):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _examples(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _top_level(keys: set[str] | list[str]) -> list[str]:
    return sorted({k.split(".", 1)[0] for k in keys})


def load_state_dict_checked(
    module: torch.nn.Module,
    state_dict_or_path: PathLike | Mapping[str, Any],
    strict: bool = True,
    expected_network: str | None = None,
    missing_hint: str = "",
    source: str | None = None,
):
    """Load weights into ``module`` with an error that says what does not fit.

    Accepts a path (read with :func:`safe_torch_load`), a plain state dict or a checkpoint dict holding one (see
    :func:`extract_state_dict`). A ``module.`` prefix left by DistributedDataParallel is removed. When the checkpoint
    dict carries a network name (``"network"``: str) and ``expected_network`` is given (else the module's class name),
    a different name is reported as such. Tensor shape mismatches are always errors; with ``strict`` missing and
    unexpected keys are too (counts and examples in the message, plus the top-level submodules of checkpoint and
    network when they share none: the checkpoint belongs to another architecture).

    Args:
        source: how messages name the weights (default: ``Checkpoint '<path>'``, or ``state dict`` for a mapping).

    Returns:
        ``torch.nn.modules.module._IncompatibleKeys`` (``missing_keys``, ``unexpected_keys``) as ``load_state_dict``.

    Raises:
        CheckpointError: the checkpoint does not match the module.

    Example::

        load_state_dict_checked(net, "models/model.pt", expected_network="TGCNet")
    """
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        source = source or f"Checkpoint '{os.fspath(state_dict_or_path)}'"
        checkpoint = safe_torch_load(state_dict_or_path, missing_hint=missing_hint)
    else:
        source = source or "state dict"
        checkpoint = state_dict_or_path
    state_dict = extract_state_dict(checkpoint, source=source)
    network_name = expected_network or type(module).__name__
    stored_name = _checkpoint_network_name(checkpoint)
    if stored_name is not None and stored_name != network_name:
        raise CheckpointError(
            f"{source} was saved for network '{stored_name}', but is being loaded into '{network_name}'."
        )

    target = module.state_dict()
    state_dict = strip_wrapper_prefix(state_dict, target)
    missing = [k for k in target if k not in state_dict]
    unexpected = [k for k in state_dict if k not in target]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs network {tuple(target[k].shape)}"
        for k, v in state_dict.items()
        if k in target and tuple(v.shape) != tuple(target[k].shape)
    ]
    problems = []
    if strict and missing:
        problems.append(f"{len(missing)} of the network's {len(target)} keys are missing ({_examples(missing)})")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} checkpoint keys are unknown to the network ({_examples(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} tensors have another shape ({_examples(mismatched, 3)})")
    if problems:
        hint = ""
        if strict and not set(_top_level(state_dict)) & set(_top_level(target)):
            hint = (
                f" The checkpoint's top-level parts ({_examples(_top_level(state_dict))}) share none with "
                f"{network_name}'s ({_examples(_top_level(target))}): it was most likely saved from another network."
            )
        elif strict and missing and unexpected and len(missing) + len(unexpected) > len(target) // 4:
            only_checkpoint = sorted(set(_top_level(unexpected)) - set(_top_level(target)))
            only_network = sorted(set(_top_level(missing)) - set(_top_level(state_dict)))
            hint = (
                f" Parts only in the checkpoint ({_examples(only_checkpoint) or 'none'}) and only in {network_name} "
                f"({_examples(only_network) or 'none'}): it was most likely saved from another network."
            )
        raise CheckpointError(f"{source} does not fit {network_name}: " + "; ".join(problems) + "." + hint)
    result = module.load_state_dict(state_dict, strict=strict)
    if missing or unexpected:
        logger.warning(
            "%s loaded non-strictly into %s: %d missing keys (%s), %d unexpected keys (%s).",
            source,
            network_name,
            len(missing),
            _examples(missing),
            len(unexpected),
            _examples(unexpected),
        )
    return result

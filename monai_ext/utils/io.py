"""Safe file output and checkpoint input.

Outputs are written to a temporary file in the destination folder, flushed to disk and moved over the destination with
``os.replace``: a reader (or a crashed run) sees either the old file or the complete new one, never a partial file.
Existing outputs are kept unless ``overwrite=True``.

Checkpoints are read with ``torch.load(weights_only=True)`` (no code runs while unpickling) and the usual failures
(missing file, truncated download, a pickle of Python objects, a checkpoint of another network) become
:class:`CheckpointError` with a message naming the file and the problem.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import pickle
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any

import numpy as np
import torch

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "PathOutsideRootError",
    "atomic_write",
    "atomic_save",
    "atomic_write_text",
    "atomic_write_json",
    "safe_torch_load",
    "extract_state_dict",
    "load_state_dict_checked",
    "check_within_root",
    "sha256_file",
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
        super().__init__(message)
        self.errno, self.strerror, self.filename = errno.ENOENT, message, path

    def __str__(self) -> str:
        return self.strerror


class PathOutsideRootError(ValueError):
    """A path taken from a dataset file points outside the dataset's root folder."""


def _new_file_mode(existing: str) -> int:
    """Permission bits for the output: the replaced file's, else what ``open`` would give under the current umask."""
    if os.path.exists(existing):
        return os.stat(existing).st_mode & 0o7777
    umask = os.umask(0)  # reading the umask requires setting it; restored immediately
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory: str) -> None:
    """Persist the rename itself; not every platform/filesystem allows opening a directory, which is fine to skip."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _exists_error(path: str) -> FileExistsError:
    return FileExistsError(errno.EEXIST, f"Output '{path}' already exists; pass overwrite=True to replace it", path)


@contextmanager
def atomic_write(
    path: PathLike, mode: str = "wb", overwrite: bool = False, encoding: str | None = None
) -> Iterator[IO[Any]]:
    """Open ``path`` for writing so that it appears complete or not at all.

    Writes go to a hidden temporary file in the same folder (same filesystem, so the final move is atomic); when the
    ``with`` block ends without error the data are flushed and fsynced and the file is moved onto ``path``. If the block
    raises, the temporary file is removed and an existing ``path`` is left untouched. Missing parent folders are created.

    Args:
        path: destination file.
        mode: ``"wb"`` (binary) or ``"w"``/``"wt"`` (text).
        overwrite: replace an existing ``path``; otherwise ``FileExistsError`` (before anything is written).
        encoding: text encoding for text modes (default UTF-8, independent of the locale).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: unsupported ``mode``.

    Example::

        with atomic_write("out/report.json", mode="w") as f:
            json.dump(report, f)
    """
    if mode not in ("wb", "w", "wt"):
        raise ValueError(f"atomic_write supports modes 'wb', 'w' and 'wt', got '{mode}' for '{path}'.")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"Output '{path}' is a directory, expected a file path", path)
    if not overwrite and os.path.lexists(path):
        raise _exists_error(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    file_mode = _new_file_mode(path)
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_path, file_mode)
        if overwrite:
            os.replace(tmp_path, path)
        else:
            # A hard link never clobbers, so a file created by someone else while we wrote is not lost.
            try:
                os.link(tmp_path, path)
            except FileExistsError:
                raise _exists_error(path) from None
            except OSError:  # filesystem without hard links
                if os.path.lexists(path):
                    raise _exists_error(path) from None
                os.replace(tmp_path, path)
        _fsync_directory(directory)
    finally:
        if os.path.lexists(tmp_path):
            os.remove(tmp_path)


def atomic_save(obj: Any, path: PathLike, overwrite: bool = False) -> None:
    """``torch.save(obj, path)`` written atomically (see :func:`atomic_write`).

    Example::

        atomic_save({"network": "TGCNet", "model": net.state_dict()}, "models/model.pt")
    """
    with atomic_write(path, mode="wb", overwrite=overwrite) as f:
        torch.save(obj, f)


def atomic_write_text(path: PathLike, text: str, overwrite: bool = False, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, mode="w", overwrite=overwrite, encoding=encoding) as f:
        f.write(text)


def _to_json_compatible(value: Any) -> Any:
    """``json.dump`` fallback for values that show up in reports and configs: numpy/torch numbers and arrays, paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def atomic_write_json(
    path: PathLike, obj: Any, overwrite: bool = False, indent: int = 2, sort_keys: bool = True
) -> None:
    """Write ``obj`` as JSON (sorted keys, indented, UTF-8, trailing newline) atomically.

    numpy/torch scalars and arrays, ``os.PathLike`` and sets are converted. Python floats NaN/inf are written as
    ``NaN``/``Infinity`` (Python's json default, read back by ``json.load``); convert them first for strict JSON.
    """
    with atomic_write(path, mode="w", overwrite=overwrite) as f:
        json.dump(obj, f, indent=indent, sort_keys=sort_keys, ensure_ascii=False, default=_to_json_compatible)
        f.write("\n")


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
    except (RuntimeError, EOFError, KeyError, UnicodeDecodeError, OSError) as e:
        # Truncated zip archives raise RuntimeError (miniz) or OSError (newer torch), short legacy files EOFError, text
        # files KeyError.
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


def _strip_prefix(state_dict: dict[str, torch.Tensor], expected: set[str], prefix: str) -> dict[str, torch.Tensor]:
    """Remove a wrapper prefix (DistributedDataParallel's ``module.``) the target module does not have."""
    if state_dict and all(k.startswith(prefix) for k in state_dict) and not any(k.startswith(prefix) for k in expected):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


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
):
    """Load weights into ``module`` with an error that says what does not fit.

    Accepts a path (read with :func:`safe_torch_load`), a plain state dict or a checkpoint dict holding one (see
    :func:`extract_state_dict`). A ``module.`` prefix left by DistributedDataParallel is removed. When the checkpoint
    dict carries a network name (``"network"``: str) and ``expected_network`` is given (else the module's class name),
    a different name is reported as such. Tensor shape mismatches are always errors; with ``strict`` missing and
    unexpected keys are too (counts and examples in the message, plus the top-level submodules of checkpoint and
    network when they share none: the checkpoint belongs to another architecture).

    Returns:
        ``torch.nn.modules.module._IncompatibleKeys`` (``missing_keys``, ``unexpected_keys``) as ``load_state_dict``.

    Raises:
        CheckpointError: the checkpoint does not match the module.

    Example::

        load_state_dict_checked(net, "models/model.pt", expected_network="TGCNet")
    """
    source = "state dict"
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        source = f"Checkpoint '{os.fspath(state_dict_or_path)}'"
        checkpoint = safe_torch_load(state_dict_or_path, missing_hint=missing_hint)
    else:
        checkpoint = state_dict_or_path
    state_dict = extract_state_dict(checkpoint, source=source)
    network_name = expected_network or type(module).__name__
    stored_name = _checkpoint_network_name(checkpoint)
    if stored_name is not None and stored_name != network_name:
        raise CheckpointError(
            f"{source} was saved for network '{stored_name}', but is being loaded into '{network_name}'."
        )

    target = module.state_dict()
    state_dict = _strip_prefix(state_dict, set(target), "module.")
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


def check_within_root(path: PathLike, root: PathLike) -> str:
    """Resolve ``path`` (relative paths are taken from ``root``) and check it stays inside ``root``.

    Symbolic links are followed on both sides, so a link pointing out of the root is refused like ``../`` or an
    absolute path elsewhere.

    Returns:
        the resolved absolute path as a string.

    Raises:
        PathOutsideRootError: the resolved path is not inside the resolved root (a ``ValueError``).

    Example::

        image = check_within_root(row["Image"], "data/QaTa-COV19/Train_Folder/img")
    """
    resolved_root = os.path.realpath(os.fspath(root))
    resolved = os.path.realpath(os.path.join(resolved_root, os.fspath(path)))
    if os.path.commonpath([resolved_root, resolved]) != resolved_root:
        raise PathOutsideRootError(
            f"Path '{os.fspath(path)}' resolves to '{resolved}', outside the dataset root '{resolved_root}'."
        )
    return resolved


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file, read in chunks (checkpoints can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()

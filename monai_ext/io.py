"""Safe file output, dataset path checks and file-name conventions (the lowest layer: imports nothing of monai_ext).

Outputs are written to a temporary file in the destination folder, flushed to disk and moved over the destination with
``os.replace``: a reader (or a crashed run) sees either the old file or the complete new one, never a partial file.
Existing outputs are kept unless ``overwrite=True``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import numpy as np
import torch

__all__ = [
    "PathOutsideRootError",
    "atomic_write",
    "atomic_write_path",
    "fsync_directory",
    "atomic_save",
    "atomic_write_text",
    "atomic_write_json",
    "check_within_root",
    "sha256_file",
    "DICOM_SUFFIXES",
    "IMAGE_SUFFIXES",
    "ITK_SUFFIXES",
    "NIFTI_SUFFIXES",
    "PICTURE_SUFFIXES",
    "image_stem",
]

PathLike = str | os.PathLike

# The file-name conventions every reader, writer and report shares. Longest first within a format, so that
# "case.nii.gz" loses ".nii.gz", not ".gz".
NIFTI_SUFFIXES = (".nii.gz", ".nii")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_SUFFIXES = (".dcm", ".dicom")
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd")
IMAGE_SUFFIXES = NIFTI_SUFFIXES + PICTURE_SUFFIXES + DICOM_SUFFIXES + ITK_SUFFIXES


class PathOutsideRootError(ValueError):
    """A path taken from a dataset file points outside the dataset's root folder."""


def _new_file_mode(existing: str) -> int:
    """Permission bits for the output: the replaced file's, else what ``open`` would give under the current umask."""
    if os.path.exists(existing):
        return os.stat(existing).st_mode & 0o7777
    umask = os.umask(0)  # reading the umask requires setting it; restored immediately
    os.umask(umask)
    return 0o666 & ~umask


def fsync_directory(directory: str) -> None:
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
def atomic_write_path(path: PathLike, overwrite: bool = False, suffix: str = "") -> Iterator[str]:
    """A temporary file path to write ``path`` through, for writers that take a file name rather than a file object.

    The temporary file lies in the destination folder (same filesystem, so the final move is atomic) and is named
    ``.<name>.<random>.tmp<suffix>``; pass the destination's suffix when the writer picks the format from it. When the
    ``with`` block ends without error the file is fsynced and moved onto ``path``; if the block raises, it is removed
    and an existing ``path`` is left untouched. Missing parent folders are created.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False (checked before the block and again at the move).

    Example::

        with atomic_write_path("out/case_mask.nii.gz", suffix=".nii.gz") as tmp:
            nibabel.save(mask_image, tmp)
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"Output '{path}' is a directory, expected a file path", path)
    if not overwrite and os.path.lexists(path):
        raise _exists_error(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    file_mode = _new_file_mode(path)
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}")
    os.close(fd)
    try:
        yield tmp_path
        # fsync through a new descriptor flushes whatever the writer wrote, however it opened the file.
        with open(tmp_path, "rb") as f:
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
        fsync_directory(directory)
    finally:
        if os.path.lexists(tmp_path):
            os.remove(tmp_path)


@contextmanager
def atomic_write(
    path: PathLike, mode: str = "wb", overwrite: bool = False, encoding: str | None = None
) -> Iterator[IO[Any]]:
    """Open ``path`` for writing so that it appears complete or not at all (see :func:`atomic_write_path`).

    Writes go to a hidden temporary file in the same folder; when the ``with`` block ends without error the data are
    fsynced and the file is moved onto ``path``. If the block raises, the temporary file is removed and an existing
    ``path`` is left untouched. Missing parent folders are created.

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
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    with atomic_write_path(path, overwrite=overwrite) as tmp_path:
        with open(tmp_path, mode, encoding=encoding) as f:
            yield f


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


def image_stem(path: PathLike) -> str:
    """An image's name without folder and image suffix: ``"a/case_1.nii.gz"`` -> ``"case_1"``; a folder (a DICOM
    series) keeps its own name; an unknown suffix is cut like ``os.path.splitext`` does."""
    path = os.fspath(path)
    name = os.path.basename(os.path.normpath(path))
    lower = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name if os.path.isdir(path) else os.path.splitext(name)[0]

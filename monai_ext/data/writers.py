"""Prediction writers that never leave a partial file and never replace an existing output unless asked."""

from __future__ import annotations

import errno
import logging
import os
import uuid
from collections.abc import Hashable, Mapping
from typing import Any

from monai.transforms import SaveImaged

from monai_ext.flags import ensure_flag
from monai_ext.io import fsync_directory

__all__ = ["SafeSaveImaged", "atomic_image_writer"]


def _suffix(filename: str) -> str:
    lower = filename.lower()
    for double in (".nii.gz", ".seg.nrrd"):
        if lower.endswith(double):
            return filename[-len(double) :]
    return os.path.splitext(filename)[1]


def atomic_image_writer(writer_cls: type) -> type:
    """A subclass of a MONAI ``ImageWriter`` whose ``write`` goes to a temporary file in the destination folder (same
    suffix, so the format is chosen as before) that is then moved over the destination with ``os.replace``."""

    class AtomicWriter(writer_cls):
        def write(self, filename, verbose: bool = False, **kwargs):
            filename = os.fspath(filename)
            directory = os.path.dirname(os.path.abspath(filename))
            os.makedirs(directory, exist_ok=True)
            tmp = os.path.join(directory, f".{os.path.basename(filename)}.{uuid.uuid4().hex}.tmp{_suffix(filename)}")
            try:
                result = super().write(tmp, verbose=False, **kwargs)
                if verbose:
                    logging.getLogger(__name__).info("writing: %s", filename)
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, filename)
                fsync_directory(directory)
            finally:
                if os.path.lexists(tmp):
                    os.remove(tmp)
            return result

    AtomicWriter.__name__ = AtomicWriter.__qualname__ = f"Atomic{writer_cls.__name__}"
    return AtomicWriter


class SafeSaveImaged(SaveImaged):
    """:class:`monai.transforms.SaveImaged` that writes atomically and refuses to replace an existing file.

    Args:
        overwrite: replace existing outputs; otherwise ``FileExistsError`` naming the file (before anything is
            written). Use a fresh ``output_dir`` or pass ``overwrite=True`` to redo a run.
        args, kwargs: as :class:`monai.transforms.SaveImaged`.

    Example::

        SafeSaveImaged(keys="pred", output_dir="predictions/masks", output_ext=".png", separate_folder=False)
    """

    def __init__(self, *args, overwrite: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.overwrite = ensure_flag(overwrite, "overwrite")
        self.saver.writers = tuple(atomic_image_writer(w) for w in self.saver.writers)

    def _target(self, img: Any, meta: Mapping | None) -> str:
        saver = self.saver
        from monai.data import MetaTensor

        meta = img.meta if isinstance(img, MetaTensor) else meta
        return os.fspath(saver.folder_layout.filename(**saver.fname_formatter(meta, saver)))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        if not self.overwrite:
            d = dict(data)
            for key, meta_key, meta_key_postfix in self.key_iterator(d, self.meta_keys, self.meta_key_postfix):
                if meta_key is None and meta_key_postfix is not None:
                    meta_key = f"{key}_{meta_key_postfix}"
                meta = d.get(meta_key) if meta_key is not None else None
                target = self._target(d[key], meta)
                if os.path.lexists(target):
                    raise FileExistsError(
                        errno.EEXIST, f"Output '{target}' already exists; set overwrite=True to replace it", target
                    )
        return super().__call__(data)

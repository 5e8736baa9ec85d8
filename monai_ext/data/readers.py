"""Image loading with clear errors: PNG/JPEG (PIL), NIfTI (nibabel), DICOM files and series (pydicom), ITK formats.

:class:`CheckedLoadImage` / :class:`CheckedLoadImaged` wrap :class:`monai.transforms.LoadImage`: the reader is chosen
from the file name as MONAI does, except that DICOM files and folders go to :class:`PydicomSeriesReader` (slices
sorted along the slice normal, rescale slope/intercept applied, affine from orientation/spacing/positions). Whatever
goes wrong while reading becomes an :class:`ImageReadError` naming the file and the problem.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import ImageReader, MetaTensor
from monai.transforms import LoadImage, MapTransform, Transform
from monai.utils import ensure_tuple
from monai_ext.io import DICOM_SUFFIXES

__all__ = [
    "ImageReadError",
    "ImageNotFoundError",
    "ShapeMismatchError",
    "is_dicom_path",
    "missing_dicom_decoders",
    "PydicomSeriesReader",
    "CheckedLoadImage",
    "CheckedLoadImaged",
]

logger = logging.getLogger(__name__)


class ImageReadError(ValueError):
    """An image file cannot be used: unreadable, corrupt, truncated, of the wrong dimension or with NaN/Inf pixels."""


class ImageNotFoundError(ImageReadError, FileNotFoundError):
    """The image file or folder does not exist (catchable as ``ImageReadError`` and ``FileNotFoundError``)."""


class ShapeMismatchError(ValueError):
    """An image and its label do not have the same spatial shape."""


def is_dicom_path(path: str | os.PathLike) -> bool:
    """True for a folder (read as a DICOM series) or a file ending in ``.dcm``/``.dicom``."""
    path = os.fspath(path)
    return os.path.isdir(path) or path.lower().endswith(DICOM_SUFFIXES)


def _lps_to_ras(affine: np.ndarray) -> np.ndarray:
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ affine


# The decoders of the 'dicom' extra (setup.cfg): import name -> PyPI package. pydicom reads uncompressed, RLE and
# (through Pillow) 8-bit JPEG and JPEG 2000 without them, but not 12-bit JPEG Extended, JPEG Lossless or JPEG-LS.
DICOM_DECODERS = {"pylibjpeg": "pylibjpeg", "libjpeg": "pylibjpeg-libjpeg", "openjpeg": "pylibjpeg-openjpeg"}


def missing_dicom_decoders() -> list[str]:
    """PyPI names of the decoders of the ``dicom`` extra that cannot be imported."""
    missing = []
    for module, package in DICOM_DECODERS.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    return missing


def _decode_failure(name: str, ds: Any, error: Exception) -> str:
    """One-line message for pixel data pydicom could not decode: the file, its transfer syntax and, when decoders of
    the ``dicom`` extra are missing for a compressed syntax, what to install."""
    cause = " ".join(str(error).split())  # pydicom lists its plugins' failures on several lines
    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if syntax is None:
        return f"Cannot decode pixel data of '{name}' (no transfer syntax in its file meta): {cause}"
    described = f"{getattr(syntax, 'name', syntax)} ({syntax})"
    missing = missing_dicom_decoders() if getattr(syntax, "is_compressed", False) else []
    if missing:
        return (
            f"Cannot decode pixel data of '{name}': no installed decoder reads its transfer syntax {described} "
            f"({cause}). Install the DICOM decoders: pip install 'monai-textseg[dicom]' (missing: {', '.join(missing)})."
        )
    return (
        f"Cannot decode pixel data of '{name}' (transfer syntax {described}; is the file corrupt or malformed?): "
        f"{type(error).__name__}: {cause}"
    )


class PydicomSeriesReader(ImageReader):
    """MONAI image reader for one DICOM file or one DICOM series (a folder, or a list of its files), using pydicom.

    Compared with :class:`monai.data.PydicomReader` it sorts slices by their position along the slice normal (the
    InstanceNumber is only a fallback), refuses folders with several series, slices of different sizes or two slices
    at the same position, and applies RescaleSlope/RescaleIntercept per slice. The array is indexed
    ``(column, row[, slice])`` like :class:`monai.data.ITKReader`, so ``affine`` maps those indices to RAS world
    coordinates in mm (LPS with ``affine_lps_to_ras=False``).

    Args:
        series_uid: the SeriesInstanceUID to read from a folder holding several series.
        affine_lps_to_ras: convert the DICOM (LPS) affine to RAS, as MONAI's readers do by default.
        kwargs: passed to ``pydicom.dcmread``.

    Example::

        loader = LoadImage(reader=PydicomSeriesReader(), image_only=True, ensure_channel_first=True)
        volume = loader("/data/ct/series_0001")  # MetaTensor (1, columns, rows, slices), float32, affine in meta
    """

    def __init__(self, series_uid: str | None = None, affine_lps_to_ras: bool = True, **kwargs):
        super().__init__()
        self.series_uid = series_uid
        self.affine_lps_to_ras = affine_lps_to_ras
        self.kwargs = kwargs

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """True when every name is a folder or ends in ``.dcm``/``.dicom``."""
        return all(is_dicom_path(name) for name in ensure_tuple(filename))

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs) -> list[tuple[str, Any]]:
        """Read the headers and pixel data of the file(s) of one series: ``[(path, pydicom.Dataset), ...]``.

        Raises:
            ImageReadError: no DICOM file in a folder, or a file pydicom cannot parse (named in the message).
        """
        import pydicom

        names = [os.fspath(name) for name in ensure_tuple(data)]
        if len(names) == 1 and os.path.isdir(names[0]):
            folder = names[0]
            names = sorted(
                os.path.join(folder, entry)
                for entry in os.listdir(folder)
                if os.path.isfile(os.path.join(folder, entry)) and pydicom.misc.is_dicom(os.path.join(folder, entry))
            )
            if not names:
                raise ImageReadError(f"Folder '{folder}' holds no DICOM file (files need the 'DICM' preamble).")
        options = {**self.kwargs, **kwargs}
        datasets = []
        for name in names:
            try:
                datasets.append((name, pydicom.dcmread(name, **options)))
            except Exception as error:  # pydicom raises InvalidDicomError, EOFError, OSError, ...
                raise ImageReadError(f"Cannot read DICOM file '{name}': {type(error).__name__}: {error}") from error
        return datasets

    def _select_series(self, datasets: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        with_pixels = [(name, ds) for name, ds in datasets if "PixelData" in ds]
        if not with_pixels:
            raise ImageReadError(f"No DICOM file with pixel data among {[name for name, _ in datasets][:5]}.")
        skipped = len(datasets) - len(with_pixels)
        if skipped:
            logger.info("Ignoring %d DICOM file(s) without pixel data next to %s.", skipped, with_pixels[0][0])
        series: dict[str, list[tuple[str, Any]]] = defaultdict(list)
        for name, ds in with_pixels:
            series[str(ds.get("SeriesInstanceUID", ""))].append((name, ds))
        if self.series_uid is not None:
            if self.series_uid not in series:
                raise ImageReadError(
                    f"Series '{self.series_uid}' not found next to '{with_pixels[0][0]}'; series present: "
                    f"{sorted(series)}."
                )
            return series[self.series_uid]
        if len(series) > 1:
            counts = {uid or "<no SeriesInstanceUID>": len(files) for uid, files in sorted(series.items())}
            raise ImageReadError(
                f"'{os.path.dirname(with_pixels[0][0])}' holds {len(series)} DICOM series {counts}; choose one with "
                "PydicomSeriesReader(series_uid=...) or put each series in its own folder."
            )
        return with_pixels

    @staticmethod
    def _pixels(name: str, ds: Any) -> np.ndarray:
        """Rescaled float32 pixels of one single-frame, single-sample slice, transposed to ``(column, row)``."""
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise ImageReadError(f"'{name}' is a multi-frame DICOM; read it with monai ITKReader instead.")
        if int(ds.get("SamplesPerPixel", 1)) != 1:
            raise ImageReadError(f"'{name}' has {ds.SamplesPerPixel} samples per pixel; only grayscale is supported.")
        try:
            pixels = np.asarray(ds.pixel_array)
        except Exception as error:  # truncated pixel data, unsupported compression, ...
            raise ImageReadError(_decode_failure(name, ds, error)) from error
        pixels = pixels.astype(np.float32) * float(ds.get("RescaleSlope", 1) or 1) + float(
            ds.get("RescaleIntercept", 0) or 0
        )
        return pixels.T

    @staticmethod
    def _geometry(name: str, ds: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(row direction, column direction, position) of a slice, or None when the tags are missing."""
        if "ImageOrientationPatient" not in ds or "ImagePositionPatient" not in ds:
            return None
        orientation = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        position = np.asarray([float(v) for v in ds.ImagePositionPatient])
        if orientation.shape != (6,) or position.shape != (3,) or not np.isfinite([*orientation, *position]).all():
            raise ImageReadError(
                f"'{name}' has an invalid ImageOrientationPatient {list(orientation)} or ImagePositionPatient "
                f"{list(position)}."
            )
        return orientation[:3], orientation[3:], position

    def get_data(self, img: list[tuple[str, Any]]) -> tuple[np.ndarray, dict]:
        """Stack the slices and build the metadata (``affine``, ``spatial_shape``, ``spacing``, ...).

        Returns:
            ``(array, meta)``: a ``(columns, rows)`` array for one file, ``(columns, rows, slices)`` for a series.

        Raises:
            ImageReadError: several series, slices of different sizes or orientations, two slices at one position,
                multi-frame or colour data, undecodable pixels.
        """
        slices = self._select_series(img)
        arrays = [self._pixels(name, ds) for name, ds in slices]
        shapes = {array.shape for array in arrays}
        if len(shapes) > 1:
            raise ImageReadError(
                f"Slices of the series in '{os.path.dirname(slices[0][0])}' differ in size: {sorted(shapes)}."
            )
        first_name, first = slices[0]
        geometry = [self._geometry(name, ds) for name, ds in slices]
        spacing = [float(v) for v in first.get("PixelSpacing", [1.0, 1.0])]
        row_spacing, column_spacing = spacing[0], spacing[1]

        if all(g is not None for g in geometry):
            row_dir, column_dir, _ = geometry[0]
            if any(
                not np.allclose(g[0], row_dir, atol=1e-4) or not np.allclose(g[1], column_dir, atol=1e-4)
                for g in geometry
            ):
                raise ImageReadError(f"Slices next to '{first_name}' have different ImageOrientationPatient.")
            normal = np.cross(row_dir, column_dir)
            distances = np.asarray([float(np.dot(g[2], normal)) for g in geometry])
            order = np.argsort(distances, kind="stable")
            gaps = np.diff(distances[order])
            if len(gaps) and np.min(gaps) < 1e-4:
                i = int(np.argmin(gaps))
                raise ImageReadError(
                    f"DICOM slices '{slices[order[i]][0]}' and '{slices[order[i + 1]][0]}' lie at the same position."
                )
            if len(gaps) and not np.allclose(gaps, gaps.mean(), rtol=1e-2, atol=1e-3):
                logger.warning("Uneven slice spacing in %s (%s): missing slices?", first_name, np.unique(gaps.round(3)))
            positions = [geometry[i][2] for i in order]
            if len(slices) > 1:
                step = (positions[-1] - positions[0]) / (len(slices) - 1)
            else:
                step = normal * float(first.get("SliceThickness", 1.0) or 1.0)
        else:
            logger.warning(
                "%s lacks ImageOrientationPatient/ImagePositionPatient: slices sorted by InstanceNumber, identity "
                "orientation assumed.",
                first_name,
            )
            order = np.argsort([int(ds.get("InstanceNumber", i)) for i, (_, ds) in enumerate(slices)], kind="stable")
            row_dir, column_dir = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
            positions = [np.zeros(3)]
            step = np.array([0.0, 0.0, float(first.get("SliceThickness", 1.0) or 1.0)])

        affine = np.eye(4)
        affine[:3, 0] = row_dir * column_spacing  # moving along a row = next column
        affine[:3, 1] = column_dir * row_spacing
        affine[:3, 2] = step
        affine[:3, 3] = positions[0]
        if self.affine_lps_to_ras:
            affine = _lps_to_ras(affine)
        if len(slices) == 1:
            array = arrays[0]
            pixel_spacing = [column_spacing, row_spacing]
        else:
            array = np.stack([arrays[i] for i in order], axis=-1)
            pixel_spacing = [column_spacing, row_spacing, float(np.linalg.norm(step))]
        meta = {
            "affine": affine,
            "original_affine": affine.copy(),
            "spatial_shape": np.asarray(array.shape),
            "original_channel_dim": float("nan"),
            "space": "RAS" if self.affine_lps_to_ras else "LPS",
            "spacing": np.asarray(pixel_spacing),
            "Modality": str(first.get("Modality", "")),
            "SeriesInstanceUID": str(first.get("SeriesInstanceUID", "")),
            "num_files": len(slices),
        }
        return array, meta


def _describe(error: Exception) -> str:
    """Short cause of a reader failure (MONAI's 'no suitable reader' message is long and suggests installing)."""
    message = str(error).strip()
    if isinstance(error, RuntimeError) and (
        "cannot find a suitable reader" in message or "Could not create IO object" in message  # MONAI / ITK
    ):
        return "no reader for this file type (PNG/JPEG, NIfTI, DICOM and ITK formats are supported)"
    first_line = message.splitlines()[0] if message else ""
    return f"{type(error).__name__}: {first_line[:300]} (is the file corrupt or truncated?)"


# ITU-R BT.601 luma, as PIL's convert("L").
_LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def match_channels(image: MetaTensor, channels: int, name: str, mask: bool = False) -> MetaTensor:
    """Bring a channel-first image to ``channels`` channels, or refuse it naming the file.

    An alpha channel (grey + alpha, RGB + alpha) is dropped. To one channel: an RGB image whose channels are equal
    (a grey picture saved as colour) keeps its first channel; other RGB images become their luma (ITU-R BT.601), and
    a *mask* with differing colour channels is refused (its values would stop being labels). To three channels: a
    grey image is repeated.

    Raises:
        ImageReadError: a channel count that cannot be brought to ``channels``, or a colour mask; names the file.
    """
    count = int(image.shape[0])
    if count == channels:
        return image
    data = image.as_tensor()
    if count in (2, 4):
        data = data[:-1]
    if data.shape[0] == 3 and channels == 1:
        if bool((data == data[:1]).all()):
            data = data[:1]
        elif mask:
            raise ImageReadError(
                f"Mask '{name}' has colour channels that differ; expected a single-channel mask (one value per "
                "pixel: 0/1, 0/255 or class indices)."
            )
        else:
            weights = torch.tensor(_LUMA_WEIGHTS, dtype=data.dtype).view(3, *([1] * (data.ndim - 1)))
            data = (data * weights).sum(0, keepdim=True)
    elif data.shape[0] == 1 and channels == 3:
        data = data.repeat(3, *([1] * (data.ndim - 1)))
    if data.shape[0] != channels:
        raise ImageReadError(f"Image '{name}' has {count} channels; expected {channels} (grey, RGB or with alpha).")
    meta = dict(image.meta)
    # One channel left: writers must treat predictions of this image as single-channel, as for a grey file.
    meta["original_channel_dim"] = float("nan") if channels == 1 else meta.get("original_channel_dim", -1)
    return MetaTensor(data, meta=meta)


class CheckedLoadImage(Transform):
    """Load one image as a channel-first :class:`~monai.data.MetaTensor`, turning every failure into a clear error.

    Uses :class:`monai.transforms.LoadImage` (``image_only=True``); DICOM files and folders are read with
    :class:`PydicomSeriesReader` unless ``reader`` is given. After reading it checks that the image is one 2D or 3D
    image (a 4D NIfTI of channels or time points is refused), brings it to ``channels`` channels
    (:func:`match_channels`) and (with ``check_finite``) checks it has no NaN/Inf value.

    Args:
        reader: reader(s) passed to ``LoadImage`` instead of the automatic choice.
        ensure_channel_first: add/move the channel to dimension 0.
        dtype: output data type.
        check_finite: reject images with NaN or Inf values.
        channels: channels the image must end up with (1: grey, 3: RGB); ``None`` keeps what the file has. Needs
            ``ensure_channel_first``.
        mask: the file is a mask: colour channels are merged only when equal.
        spatial_dims: 2 or 3 to require that many spatial dimensions (a 3D image one slice thick counts as 2D and
            loses its last axis); ``None`` accepts both. Needs ``ensure_channel_first``.
        kwargs: further ``LoadImage`` arguments.

    Raises (when called):
        ImageNotFoundError: the path does not exist.
        ImageReadError: the file cannot be read, is not one 2D/3D image, has a channel count that cannot become
            ``channels``, or has NaN/Inf values; names the file and the problem.

    Example::

        image = CheckedLoadImage()("covid_1.png")  # MetaTensor (1, W, H) float32, meta["filename_or_obj"]
    """

    def __init__(
        self,
        reader: ImageReader | str | Sequence | None = None,
        ensure_channel_first: bool = True,
        dtype: Any = np.float32,
        check_finite: bool = True,
        channels: int | None = None,
        mask: bool = False,
        spatial_dims: int | None = None,
        **kwargs,
    ):
        if (channels is not None or spatial_dims is not None) and not ensure_channel_first:
            raise ValueError("channels and spatial_dims need ensure_channel_first=True.")
        if spatial_dims not in (None, 2, 3):
            raise ValueError(f"spatial_dims must be 2, 3 or None, got {spatial_dims!r}.")
        self.spatial_dims = spatial_dims
        self.ensure_channel_first = ensure_channel_first
        self.check_finite = check_finite
        self.channels = channels
        self.mask = mask
        self.loader = LoadImage(
            reader=reader, image_only=True, ensure_channel_first=ensure_channel_first, dtype=dtype, **kwargs
        )
        self.dicom_reader = PydicomSeriesReader() if reader is None else None

    def __call__(self, filename: str | os.PathLike) -> MetaTensor:
        names = [os.fspath(name) for name in ensure_tuple(filename)]
        label = names[0] if len(names) == 1 else str(names)
        missing = [name for name in names if not os.path.exists(name)]
        if missing:
            raise ImageNotFoundError(f"Image file not found: {', '.join(missing)}")
        use_dicom = self.dicom_reader is not None and all(is_dicom_path(name) for name in names)
        try:
            image = self.loader(filename, reader=self.dicom_reader if use_dicom else None)
        except ImageReadError:
            raise
        except Exception as error:  # readers raise OSError, EOFError, zlib.error, ValueError, RuntimeError, ...
            raise ImageReadError(f"Cannot read image '{label}': {_describe(error)}") from error
        spatial_dims = image.ndim - 1 if self.ensure_channel_first else image.ndim
        if spatial_dims not in (2, 3):
            raise ImageReadError(
                f"Image '{label}' has shape {tuple(image.shape)}: {spatial_dims} spatial dimension(s), expected 2 or 3."
            )
        channel_dim = image.meta.get("original_channel_dim", float("nan"))
        has_channel_axis = isinstance(channel_dim, (int, float)) and not np.isnan(channel_dim)
        if self.ensure_channel_first and has_channel_axis and spatial_dims == 3:
            raise ImageReadError(
                f"Image '{label}' is 4D: {image.shape[0]} volumes (channels or time points) of shape "
                f"{tuple(image.shape[1:])}; expected one 2D or 3D image."
            )
        if self.spatial_dims == 2 and spatial_dims == 3 and image.shape[-1] == 1:
            meta = dict(image.meta)
            meta["affine"] = image.affine[[0, 1, 3]][:, [0, 1, 3]]
            meta["spatial_shape"] = np.asarray(image.shape[1:-1])
            image = MetaTensor(image.as_tensor()[..., 0], meta=meta)
        elif self.spatial_dims is not None and spatial_dims != self.spatial_dims:
            raise ImageReadError(
                f"Image '{label}' is {spatial_dims}D (shape {tuple(image.shape[1:])}); expected a {self.spatial_dims}D "
                "image" + (": slice volumes first." if self.spatial_dims == 2 else ".")
            )
        if self.channels is not None:
            image = match_channels(image, self.channels, label, self.mask)
        if self.check_finite and image.is_floating_point():
            bad = int((~torch.isfinite(image.as_tensor())).sum())
            if bad:
                raise ImageReadError(f"Image '{label}' contains {bad} NaN/Inf value(s).")
        return image


class CheckedLoadImaged(MapTransform):
    """Dictionary version of :class:`CheckedLoadImage`, which also checks that the label matches the image's size.

    Args:
        keys: entries holding paths to load, e.g. ``["image", "label"]``.
        image_key, label_key: when both are loaded, their spatial shapes must be equal.
        channels: channels every key but ``label_key`` must end up with (see :class:`CheckedLoadImage`).
        label_channels: the same for ``label_key``, merging colour channels only when they are equal.
        reader, ensure_channel_first, dtype, check_finite, spatial_dims, kwargs: see :class:`CheckedLoadImage`.
        allow_missing_keys: skip absent keys instead of raising ``KeyError``.

    Raises (when called):
        ImageReadError / ImageNotFoundError: as :class:`CheckedLoadImage`.
        ShapeMismatchError: image and label differ in spatial shape (both files named).

    Example::

        load = CheckedLoadImaged(keys=["image", "label"])
        sample = load({"image": "img/covid_1.png", "label": "labelcol/mask_covid_1.png", "text": "..."})
    """

    def __init__(
        self,
        keys: KeysCollection,
        reader: ImageReader | str | Sequence | None = None,
        ensure_channel_first: bool = True,
        dtype: Any = np.float32,
        check_finite: bool = True,
        image_key: str = "image",
        label_key: str = "label",
        allow_missing_keys: bool = False,
        channels: int | None = None,
        label_channels: int | None = None,
        spatial_dims: int | None = None,
        **kwargs,
    ):
        super().__init__(keys, allow_missing_keys)
        self.loader = CheckedLoadImage(
            reader, ensure_channel_first, dtype, check_finite, channels=channels, spatial_dims=spatial_dims, **kwargs
        )
        self.label_loader = CheckedLoadImage(
            reader, ensure_channel_first, dtype, check_finite, channels=label_channels, mask=True,
            spatial_dims=spatial_dims, **kwargs,
        )  # fmt: skip
        self.image_key, self.label_key = image_key, label_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        loaded = set()
        for key in self.key_iterator(d):
            d[key] = (self.label_loader if key == self.label_key else self.loader)(d[key])
            loaded.add(key)
        if {self.image_key, self.label_key} <= loaded:
            image, label = d[self.image_key], d[self.label_key]
            first_spatial = 1 if self.loader.ensure_channel_first else 0
            image_shape, label_shape = tuple(image.shape[first_spatial:]), tuple(label.shape[first_spatial:])
            if image_shape != label_shape:
                # MONAI's order is x, y(, z): width first for PNG/JPEG, the reverse of numpy's (rows, columns).
                axes = "width x height" if len(image_shape) == 2 else "voxels along x, y, z"
                raise ShapeMismatchError(
                    f"Label '{label.meta.get('filename_or_obj')}' is {' x '.join(map(str, label_shape))} but image "
                    f"'{image.meta.get('filename_or_obj')}' is {' x '.join(map(str, image_shape))} ({axes})."
                )
        return d

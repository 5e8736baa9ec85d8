"""Predict with your own report: one image (PNG, NIfTI, DICOM file or series folder) plus free text -> mask + overlay.

Everything model-specific comes from the bundle: the network is built from ``configs/inference.json`` (plus any extra
config files and overrides) with :class:`monai.bundle.ConfigParser`, the checkpoint is loaded with
:func:`monai_ext.checkpoint.load_state_dict_checked` (``weights_only`` loading, clear errors), and the bundle's own
``preprocessing`` (image loading, intensity scaling, resizing, knowledge lookup, tokenization) prepares each input. The
extra network inputs (``text_tokens``, ``knowledge_tokens`` for TGC-Net) are read from the bundle's
``prepare_batch#extra_keys``, so the same code serves any bundle whose inference config follows that layout.

Outputs (written atomically, existing files kept unless ``overwrite=True``):

* PNG/JPEG input -> ``<name>_mask.png`` at the input's size (binary masks as 0/255, index maps as their values);
* NIfTI input -> ``<name>_mask.nii.gz`` with the input's affine and voxel grid (labels 0/1...);
* DICOM file or series folder -> ``<name>_mask.nii.gz`` in the series' geometry: voxel ``(i, j, k)`` is
  (column, row, slice sorted along the slice normal) and the affine maps it to RAS millimetres, computed from
  ImagePositionPatient/ImageOrientationPatient/PixelSpacing (see :class:`monai_ext.data.PydicomSeriesReader`). We write
  NIfTI rather than DICOM SEG because SEG needs ``highdicom``, which is not among the bundles' required packages; the
  NIfTI overlays the series in 3D Slicer, ITK-SNAP or any reader that honours the affine.
* ``<name>_overlay.png``: the image with the prediction in red and the report printed below it (for volumes, the slice
  with the most predicted foreground, named on the picture).

Volumes (3D NIfTI, DICOM series) are segmented slice by slice along the last axis when the network is 2D; the
preprocessing must then accept volumes (for TGC-Net add ``configs/inference_ct.json``, which windows HU and resizes
in-plane only)."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd
from monai_ext.bundle.parser import (
    bundle_parser,
    flatten_transforms,
    is_image_loader,
    load_bundle_network,
    network_input_keys,
)
from monai_ext.data.readers import is_dicom_path
from monai_ext.data.validation import transform_error
from monai_ext.data.writers import write_mask
from monai_ext.inferers import TextSliceInferer
from monai_ext.io import NIFTI_SUFFIXES, PICTURE_SUFFIXES, atomic_write, atomic_write_text, image_stem
from monai_ext.text.tokenize import TextInputError
from monai_ext.visualize import render_overlay

__all__ = [
    "input_format",
    "output_paths",
    "PredictionResult",
    "BundlePredictor",
    "PredictionSummary",
    "IMAGE_COLUMNS",
    "TEXT_COLUMNS",
    "read_prediction_csv",
    "predict_csv",
    "describe_inputs",
]

logger = logging.getLogger(__name__)


def input_format(path: str) -> str:
    """``"picture"`` (PNG/JPEG/...), ``"nifti"``, ``"dicom"`` (file or folder) or ``"other"`` (ITK formats)."""
    lower = os.fspath(path).lower()
    if is_dicom_path(path):
        return "dicom"
    if lower.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if lower.endswith(PICTURE_SUFFIXES):
        return "picture"
    return "other"


def output_paths(image: str, output_dir: str, name: str | None = None) -> dict[str, str]:
    """Where :meth:`BundlePredictor.predict_file` writes for ``image``: ``{"mask": ..., "overlay": ...}``."""
    name = name or image_stem(image)
    suffix = ".png" if input_format(image) == "picture" else ".nii.gz"
    return {
        "mask": os.path.join(output_dir, f"{name}_mask{suffix}"),
        "overlay": os.path.join(output_dir, f"{name}_overlay.png"),
    }


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if isinstance(value, MetaTensor):
            value = value.as_tensor()
        return value.numpy()
    return np.asarray(value)


def _volume_hint(error: BaseException, image: str) -> str:
    """A hint when a 2D preprocessing meets a volume (e.g. TGC-Net's inference.json on a CT series)."""
    text = str(error)
    if input_format(image) in ("dicom", "nifti") and ("spatial_size" in text or "dimension" in text or "dims" in text):
        return "(a volume? add a config whose preprocessing takes volumes, e.g. configs/inference_ct.json)"
    return ""


@dataclass
class PredictionResult:
    """Outputs of one prediction: file paths, the report, foreground voxel count and the mask (input grid)."""

    image: str
    text: str
    mask_path: str
    overlay_path: str
    foreground: int
    mask: np.ndarray = field(repr=False)


class BundlePredictor:
    """Segment an image according to a free-text report with a bundle's network and preprocessing.

    Args:
        bundle_dir: the bundle folder (holding ``configs/inference.json``).
        checkpoint: weights file (default ``<bundle>/models/model.pt``, i.e. the config's ``ckpt_dir``).
        config_files: extra configs merged after ``inference.json`` (paths, or names under the bundle/configs), e.g.
            ``configs/inference_ct.json`` for CT volumes or ``configs/demo_inference.json`` for the tiny demo CLIP.
        overrides: config overrides ``{"id": value}`` applied last.
        device: ``"cpu"``, ``"cuda"``...
        threshold: probability threshold for single-channel (sigmoid) outputs; multi-channel outputs take the argmax.
        slice_batch_size: slices per forward pass for volumes.

    Example::

        predictor = BundlePredictor("bundles/tgcnet", checkpoint="models/model.pt")
        result = predictor.predict_file("case1.png", "Two infected areas, upper left and lower right lung.", "out")
    """

    def __init__(
        self,
        bundle_dir: str,
        checkpoint: str | None = None,
        config_files: str | Sequence[str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
        threshold: float = 0.5,
        slice_batch_size: int = 8,
        image_key: str = "image",
        text_key: str = "text",
    ):
        self.bundle_dir = os.path.abspath(bundle_dir)
        self.parser = bundle_parser(bundle_dir, config_files, overrides)
        self.device = torch.device(device)
        self.network = load_bundle_network(self.parser, checkpoint, self.device)
        self.threshold = threshold
        self.slice_batch_size = max(1, int(slice_batch_size))
        # Whole slices (roi -1: the image's size) along the last axis, for 2D networks on volumes.
        self.slice_inferer = TextSliceInferer(roi_size=(-1, -1), spatial_dim=2, sw_batch_size=self.slice_batch_size)
        self.image_key, self.text_key = image_key, text_key
        transforms = flatten_transforms(self.parser.get_parsed_content("preprocessing"))
        loaders = [i for i, t in enumerate(transforms) if is_image_loader(t)]
        if not loaders:
            raise ValueError(
                f"The preprocessing of {self.bundle_dir} has no LoadImaged/CheckedLoadImaged: cannot read files."
            )
        self.load = Compose(transforms[: loaders[0] + 1])
        self.transform = Compose(transforms[loaders[0] + 1 :])
        self.input_keys = network_input_keys(self.parser, image_key=image_key)
        spatial = self.parser.get("_meta_#network_data_format#inputs#image#spatial_shape", None)
        self.network_spatial_dims = len(spatial) if spatial else 2

    # -- steps ------------------------------------------------------------------------------------------------------
    def prepare(self, image: str, text: str) -> tuple[dict, dict]:
        """Load ``image`` and run the bundle's preprocessing on it and ``text``: ``(loaded item, preprocessed item)``."""
        if text is None:
            text = ""
        if not isinstance(text, str) or (self.input_keys and not text.strip()):
            raise TextInputError(f"No report text for '{image}': give the findings to segment.")
        try:
            loaded = self.load({self.image_key: os.fspath(image), self.text_key: text})
            original = loaded[self.image_key]
            prepared = self.transform(dict(loaded))
        except RuntimeError as error:
            root = transform_error(error)
            if root is error:
                raise
            hint = _volume_hint(root, image)
            if hint:
                raise ValueError(f"{type(root).__name__}: {root} {hint}") from error
            raise root from error
        return {self.image_key: original}, prepared

    def _extras(self, item: Mapping, batch: int) -> dict[str, torch.Tensor]:
        extras = {}
        for keyword, key in self.input_keys.items():
            if key not in item:
                raise KeyError(f"The preprocessing did not produce '{key}' (network input '{keyword}').")
            value = torch.as_tensor(_numpy(item[key]) if isinstance(item[key], MetaTensor) else item[key])
            value = value.to(self.device)[None]
            extras[keyword] = value.expand(batch, *value.shape[1:]) if batch > 1 else value
        return extras

    def _activate(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] == 1:
            return (torch.sigmoid(logits.float()) >= self.threshold).float()
        return logits.argmax(dim=1, keepdim=True).float()

    @torch.no_grad()
    def infer(self, item: Mapping) -> torch.Tensor:
        """Network prediction on a preprocessed item, thresholded/argmaxed: ``[1, *spatial]`` (preprocessed grid)."""
        image = torch.as_tensor(_numpy(item[self.image_key])).float().to(self.device)
        spatial_dims = image.ndim - 1
        if spatial_dims == self.network_spatial_dims:
            return self._activate(self.network(image[None], **self._extras(item, 1)))[0].cpu()
        if spatial_dims != self.network_spatial_dims + 1:
            raise ValueError(
                f"Preprocessed image has shape {tuple(image.shape)}; the network takes {self.network_spatial_dims}D "
                "images (or volumes slice by slice)."
            )

        logits = self.slice_inferer(image[None], self.network, **self._extras(item, 1))
        return self._activate(logits)[0].cpu()  # [1, H, W, D]

    def to_input_grid(self, pred: torch.Tensor, prepared: Mapping, original: torch.Tensor) -> np.ndarray:
        """Undo the preprocessing's spatial transforms (nearest neighbour): the mask on the input's voxel grid."""
        target = tuple(original.shape[1:])
        inverted = pred
        image = prepared[self.image_key]
        if isinstance(image, MetaTensor) and image.applied_operations:
            try:
                inverter = Invertd(
                    keys="pred", transform=self.transform, orig_keys=self.image_key, nearest_interp=True, to_tensor=True
                )
                inverted = inverter({**prepared, "pred": MetaTensor(pred, meta=dict(image.meta))})["pred"]
            except Exception as error:  # fall back to plain resampling below
                logger.warning("Could not invert the preprocessing (%s); resampling the mask instead.", error)
                inverted = pred
        inverted = torch.as_tensor(_numpy(inverted)).float()
        if tuple(inverted.shape[1:]) != target:
            if inverted.ndim - 1 != len(target):
                raise ValueError(f"Prediction {tuple(inverted.shape)} cannot be mapped onto the input grid {target}.")
            inverted = torch.nn.functional.interpolate(inverted[None], size=target, mode="nearest")[0]
        return np.rint(inverted.numpy()[0]).astype(np.uint8)

    # -- outputs ----------------------------------------------------------------------------------------------------
    def write_mask(self, mask: np.ndarray, image: str, original: torch.Tensor, path: str, overwrite: bool) -> None:
        """Mask in the input's format: PNG for pictures, NIfTI with the input's (NIfTI or DICOM) geometry otherwise."""
        kind = input_format(image)
        if kind == "picture":
            write_mask(mask, path, overwrite=overwrite)
            return
        if kind == "nifti":
            import nibabel as nib

            source = nib.load(os.fspath(image))
            if mask.shape != tuple(source.shape):
                if mask.size != int(np.prod(source.shape)):
                    raise ValueError(
                        f"Mask shape {mask.shape} does not fit the NIfTI '{image}' of shape {source.shape}."
                    )
                mask = mask.reshape(source.shape)  # e.g. a trailing singleton axis of a 2D NIfTI
            write_mask(mask, path, source.affine, header=source.header, overwrite=overwrite)
            return
        meta = getattr(original, "meta", {}) or {}
        affine = _numpy(meta.get("original_affine", meta.get("affine", np.eye(4))))
        if mask.ndim == 2:  # one DICOM slice: a one-slice volume in the slice's geometry
            mask = mask[..., None]
        write_mask(mask, path, affine, overwrite=overwrite)

    def write_overlay(self, mask: np.ndarray, original: torch.Tensor, text: str, path: str, overwrite: bool) -> None:
        image = _numpy(original).astype(np.float32)  # [C, x, y(, z)]
        lines = [text] if text else []
        if mask.ndim == 3:
            areas = mask.reshape(-1, mask.shape[-1]).astype(bool).sum(0)
            k = int(areas.argmax()) if areas.max() > 0 else mask.shape[-1] // 2
            lines.append(
                f"slice {k + 1} of {mask.shape[-1]} ({'most foreground' if areas.max() > 0 else 'no foreground; middle'})"
            )
            image, mask = image[..., k], mask[..., k]
        if image.shape[0] not in (1, 3):
            image = image[:1]
        picture = render_overlay(np.swapaxes(image, -1, -2), pred=np.swapaxes(mask, -1, -2), text=lines)
        with atomic_write(path, mode="wb", overwrite=overwrite) as f:
            picture.save(f, format="PNG")

    def predict_file(
        self, image: str, text: str, output_dir: str, overwrite: bool = False, name: str | None = None
    ) -> PredictionResult:
        """Segment ``image`` as ``text`` describes; write the mask and overlay to ``output_dir``.

        Raises:
            FileExistsError: an output exists and ``overwrite`` is False (checked before any work).
            monai_ext.data.ImageReadError: the image cannot be read.
        """
        paths = output_paths(image, output_dir, name)
        if not overwrite:
            for path in paths.values():
                if os.path.lexists(path):
                    raise FileExistsError(f"Output '{path}' already exists; pass overwrite=True to replace it.")
        loaded, prepared = self.prepare(image, text)
        original = loaded[self.image_key]
        try:
            pred = self.infer(prepared)
        except RuntimeError as error:
            raise RuntimeError(
                f"Network failed on '{image}' (preprocessed shape " f"{tuple(prepared[self.image_key].shape)}): {error}"
            ) from error
        mask = self.to_input_grid(pred, prepared, original)
        self.write_mask(mask, image, original, paths["mask"], overwrite)
        self.write_overlay(mask, original, text, paths["overlay"], overwrite)
        return PredictionResult(
            image=os.fspath(image),
            text=text,
            mask_path=paths["mask"],
            overlay_path=paths["overlay"],
            foreground=int((mask > 0).sum()),
            mask=mask,
        )


@dataclass
class PredictionSummary:
    """Outcome of :func:`predict_csv`: successful results and ``(row, image, error)`` failures."""

    results: list[PredictionResult]
    failures: list[tuple[int, str, str]]
    summary_file: str | None = None

    def report(self) -> str:
        lines = [f"{len(self.results)} predicted, {len(self.failures)} failed."]
        for row, image, error in self.failures:
            lines.append(f"  row {row}: {image}: {error}")
        if self.summary_file:
            lines.append(f"Summary: {self.summary_file}")
        return "\n".join(lines)


IMAGE_COLUMNS = ("image", "Image", "path")


TEXT_COLUMNS = ("text", "Text", "report", "Report", "Description")


def read_prediction_csv(csv_file: str, image_root: str | None = None) -> list[dict]:
    """Rows ``{"row", "image", "text", "name"}`` of a CSV with an image and a text column (``image``/``text`` or the
    aliases in ``IMAGE_COLUMNS``/``TEXT_COLUMNS``); relative image paths are taken from ``image_root`` (default: the
    CSV's folder). Repeated names (the same image with several reports) get ``_2``, ``_3``... suffixes."""
    if not os.path.isfile(csv_file):
        raise FileNotFoundError(f"CSV file '{csv_file}' does not exist.")
    root = image_root or os.path.dirname(os.path.abspath(csv_file))
    with open(csv_file, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        image_col = next((c for c in IMAGE_COLUMNS if c in columns), None)
        text_col = next((c for c in TEXT_COLUMNS if c in columns), None)
        if image_col is None or text_col is None:
            raise ValueError(
                f"CSV '{csv_file}' needs an image column ({'/'.join(IMAGE_COLUMNS)}) and a text column "
                f"({'/'.join(TEXT_COLUMNS)}); it has {columns}."
            )
        rows = []
        seen: dict[str, int] = {}
        for number, row in enumerate(reader, start=2):  # row 1 is the header
            image = (row.get(image_col) or "").strip()
            path = image if not image or os.path.isabs(image) else os.path.join(root, image)
            name = (row.get("name") or "").strip() or image_stem(path or f"row{number}")
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = f"{name}_{seen[name]}"
            rows.append({"row": number, "image": path, "text": row.get(text_col) or "", "name": name})
    return rows


def predict_csv(
    predictor: BundlePredictor,
    csv_file: str,
    output_dir: str,
    image_root: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> PredictionSummary:
    """Predict every (image, text) row of ``csv_file`` with a progress bar; a failing row is recorded and the run goes
    on. Writes ``<output_dir>/predictions.csv`` (one line per row: status, outputs, foreground, error) at the end."""
    from tqdm import tqdm

    rows = read_prediction_csv(csv_file, image_root)
    summary_file = os.path.join(output_dir, "predictions.csv")
    if not overwrite and os.path.lexists(summary_file):
        raise FileExistsError(f"Output '{summary_file}' already exists; pass overwrite=True to replace it.")
    results, failures, lines = [], [], []
    for row in tqdm(rows, desc="predict", unit="image", disable=not progress, file=sys.stderr):
        try:
            if not row["image"]:
                raise ValueError("empty image path")
            result = predictor.predict_file(
                row["image"], row["text"], output_dir, overwrite=overwrite, name=row["name"]
            )
        except Exception as error:  # one bad file must not stop the others
            message = f"{type(error).__name__}: {error}"
            failures.append((row["row"], row["image"], message))
            lines.append([row["row"], row["image"], row["text"], "failed", "", "", "", message])
            continue
        results.append(result)
        lines.append(
            [row["row"], row["image"], row["text"], "ok", result.mask_path, result.overlay_path, result.foreground, ""]
        )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "image", "text", "status", "mask", "overlay", "foreground_voxels", "error"])
    writer.writerows(lines)
    atomic_write_text(summary_file, buffer.getvalue(), overwrite=True)
    return PredictionSummary(results, failures, summary_file)


def describe_inputs(predictor: BundlePredictor) -> str:
    """One line naming the bundle, the network inputs and the device (printed by the CLI)."""
    return json.dumps(
        {"bundle": predictor.bundle_dir, "inputs": ["image", *predictor.input_keys], "device": str(predictor.device)}
    )

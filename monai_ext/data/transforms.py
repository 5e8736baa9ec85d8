"""Dataset transforms: one report drawn from several (:class:`RandomTextd`), checks of label values, the pixel
spacing kept for evaluation (:class:`RecordSpacingd`), the logits picked from a network's training outputs
(:class:`SelectOutputd`), and random intensity curves for single-source domain generalisation, global
(:class:`RandIntensityCurved`) and one per labelled structure (:class:`RandClassIntensityCurved`)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, Randomizable, RandomizableTransform, Transform
from monai.utils import TransformBackends, convert_to_tensor
from monai.utils.type_conversion import convert_to_dst_type

__all__ = [
    "LabelValueError",
    "RandomTextd",
    "BinarizeMask",
    "BinarizeMaskd",
    "ValidateLabelValues",
    "ValidateLabelValuesd",
    "RecordSpacingd",
    "SelectOutput",
    "SelectOutputd",
    "RandIntensityCurve",
    "RandIntensityCurved",
    "RandClassIntensityCurve",
    "RandClassIntensityCurved",
]


class LabelValueError(ValueError):
    """A label holds values it should not (a non-binary mask, a class index outside the allowed set)."""


def _source_of(array: Any) -> str:
    """The file an array was loaded from (MetaTensor metadata), for error messages."""
    meta = getattr(array, "meta", None) or {}
    return str(meta.get("filename_or_obj", "<array without file name>"))


def _format_values(values: Sequence[float], limit: int = 10) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)} distinct)"


class RandomTextd(Randomizable, MapTransform):
    """Pick one report when an item offers several: a random one per call when training, the first otherwise.

    A string passes through unchanged; a list/tuple of strings becomes one of its items. Seed it with
    ``set_random_state`` (``Compose.set_random_state`` and MONAI datasets do so).

    Args:
        keys: entries holding the text, usually ``"text"``.
        training: draw at random; ``False`` always takes the first item (deterministic evaluation).
        allow_missing_keys: skip absent keys instead of raising ``KeyError``.

    Raises (when called):
        ValueError: the entry is an empty list, or neither a string nor a list of non-empty strings.

    Example::

        pick = RandomTextd(keys="text").set_random_state(seed=0)
        pick({"text": ["bilateral pulmonary infection", "infection in both lungs"]})["text"]
    """

    def __init__(self, keys: KeysCollection = "text", training: bool = True, allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.training = training
        self._index = 0

    def randomize(self, data: Sequence[str]) -> None:
        self._index = int(self.R.randint(len(data))) if self.training else 0

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            if isinstance(value, str):
                continue
            where = f"'{key}' of {d.get('name') or d.get('image') or 'the item'}"
            if not isinstance(value, (list, tuple)) or not value:
                raise ValueError(f"Text {where} must be a string or a non-empty list of strings, got {value!r}.")
            if not all(isinstance(item, str) and item.strip() for item in value):
                raise ValueError(f"Text {where} holds an empty or non-string entry: {value!r}.")
            self.randomize(value)
            d[key] = value[self._index]
        return d


class BinarizeMask(Transform):
    """Turn a binary mask stored as 0/1 or 0/255 into float32 {0, 1}; any other set of values is an error.

    Masks that are not strictly binary usually come from lossy compression (JPEG) or resizing with interpolation:
    they are refused rather than silently thresholded.

    Raises (when called):
        LabelValueError: the mask holds other values, or both 1 and 255 (the message names the file and the values).

    Example::

        BinarizeMask()(torch.tensor([[0, 255], [255, 0]]))  # tensor([[0., 1.], [1., 0.]])
    """

    def __call__(self, mask: NdarrayOrTensor) -> NdarrayOrTensor:
        values = convert_to_tensor(mask, track_meta=False)
        found = torch.unique(values).tolist()
        allowed = {0.0, 1.0} if set(found) <= {0.0, 1.0} else {0.0, 255.0}
        offending = [v for v in found if v not in allowed]
        if offending:
            raise LabelValueError(
                f"Mask '{_source_of(mask)}' is not binary: values {_format_values(found)}, of which "
                f"{_format_values(offending)} are neither background 0 nor foreground 1 or 255 (masks must be stored "
                "losslessly as 0/1 or 0/255)."
            )
        binary = values > 0
        dtype = torch.float32 if isinstance(mask, torch.Tensor) else np.float32
        return convert_to_dst_type(binary, dst=mask, dtype=dtype)[0]


class BinarizeMaskd(MapTransform):
    """Dictionary version of :class:`BinarizeMask`.

    Example::

        BinarizeMaskd(keys="label")({"label": mask_0_255})["label"]  # float32 {0, 1}
    """

    def __init__(self, keys: KeysCollection = "label", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.binarize = BinarizeMask()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.binarize(d[key])
        return d


class ValidateLabelValues(Transform):
    """Check that a class-index map only holds allowed values; returns the input unchanged.

    Args:
        allowed: the class indices that may occur, e.g. ``(0, 1, 2)`` for background / optic disc / optic cup.

    Raises (when called):
        LabelValueError: other values occur (the message names the file and the values).

    Example::

        ValidateLabelValues(allowed=(0, 1, 2))(label)
    """

    def __init__(self, allowed: Sequence[float] = (0, 1, 2)):
        if len(allowed) == 0:
            raise ValueError("ValidateLabelValues needs at least one allowed value.")
        self.allowed = tuple(float(v) for v in allowed)

    def __call__(self, label: NdarrayOrTensor) -> NdarrayOrTensor:
        found = torch.unique(convert_to_tensor(label, track_meta=False)).tolist()
        offending = [v for v in found if float(v) not in self.allowed]
        if offending:
            raise LabelValueError(
                f"Label '{_source_of(label)}' holds values {_format_values(offending)} outside the allowed "
                f"{list(self.allowed)}."
            )
        return label


class ValidateLabelValuesd(MapTransform):
    """Dictionary version of :class:`ValidateLabelValues`.

    Example::

        ValidateLabelValuesd(keys="label", allowed=(0, 1, 2))
    """

    def __init__(self, keys: KeysCollection = "label", allowed: Sequence[float] = (0, 1, 2), allow_missing_keys=False):
        super().__init__(keys, allow_missing_keys)
        self.validate = ValidateLabelValues(allowed)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.validate(d[key])
        return d


class RecordSpacingd(MapTransform):
    """Keep an image's pixel spacing as a plain entry, so that it survives dropping the metadata (``EnsureTyped`` with
    ``track_meta=False``) and batching, for distance metrics (HD95, NSD) in the image's own units.

    The spacing is the ``MetaTensor``'s ``pixdim`` at this point of the pipeline: after a ``Resized`` it is the
    original spacing times the resize factor, so distances come out in millimetres for NIfTI and DICOM images and in
    pixels of the original image for PNG and JPEG (whose spacing is 1). An image without metadata gets spacing 1.

    With ``slice_spacing_key`` the distance between neighbouring slices of a 2D image cut from a volume is kept too
    (the length of the affine's third axis, which :class:`~monai_ext.data.VolumeSlicer` sets to the volume's slice
    axis; 1 for an image without one): with the in-plane spacing it is the voxel size that per-volume metrics of
    stacked slices need (:class:`monai_ext.metrics.SliceVolumeReport`).

    Args:
        keys: the image entry (one key).
        output_key: where the spacing goes, a float64 tensor with one value per spatial axis.
        slice_spacing_key: where the distance between slices of a 2D image goes (a float64 scalar tensor); None:
            not recorded.

    Example::

        RecordSpacingd(keys="image")({"image": resized_image})["spacing"]  # tensor([2.0, 1.5]) for 80x60 -> 40x40
        RecordSpacingd("image", slice_spacing_key="slice_spacing")({"image": nifti_slice})["slice_spacing"]  # 8.0
    """

    def __init__(
        self, keys: KeysCollection = "image", output_key: str = "spacing", slice_spacing_key: str | None = None
    ):
        super().__init__(keys)
        if len(self.keys) != 1:
            raise ValueError(f"RecordSpacingd takes one image key, got {self.keys}.")
        self.output_key = output_key
        self.slice_spacing_key = slice_spacing_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.keys[0]]
        spatial_dims = len(image.shape) - 1
        pixdim = getattr(image, "pixdim", None) if getattr(image, "meta", None) else None
        spacing = torch.ones(spatial_dims, dtype=torch.float64) if pixdim is None else torch.as_tensor(pixdim)
        d[self.output_key] = spacing.to(torch.float64)[:spatial_dims].clone()
        if self.slice_spacing_key is not None:
            affine = getattr(image, "affine", None) if getattr(image, "meta", None) else None
            step = 1.0
            if spatial_dims == 2 and affine is not None and affine.shape[-1] == 4:
                step = float(torch.linalg.vector_norm(torch.as_tensor(affine, dtype=torch.float64)[:3, 2])) or 1.0
            d[self.slice_spacing_key] = torch.tensor(step, dtype=torch.float64)
        return d


class SelectOutput(Transform):
    """A network's output dict -> its ``output_key`` entry; a tensor passes unchanged.

    Networks with auxiliary outputs (``TGCNet``, ``VLSANet``) return a dict in training mode and the logits alone in
    eval mode, so postprocessing shared by a trainer and an evaluator starts with this to get the logits in both.

    Args:
        output_key: the entry holding the logits.

    Example::

        SelectOutput()({"pred": logits, "similarity": similarity})  # logits
        SelectOutput()(logits)  # logits
    """

    def __init__(self, output_key: str = "pred"):
        self.output_key = output_key

    def __call__(self, output: NdarrayOrTensor | Mapping[Hashable, Any]) -> Any:
        if isinstance(output, Mapping):
            return output[self.output_key]
        return output


class SelectOutputd(MapTransform):
    """Dictionary version of :class:`SelectOutput`: the entries ``keys`` holding a network's output (a dict of
    outputs, as decollated by MONAI's trainers, or a tensor) become the logits.

    Example::

        SelectOutputd(keys="pred")({"pred": {"pred": logits, "similarity": similarity}})["pred"]  # logits
    """

    def __init__(self, keys: KeysCollection = "pred", output_key: str = "pred", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.select = SelectOutput(output_key)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.select(d[key])
        return d


def _bezier_curve(control_x: np.ndarray, control_y: np.ndarray, num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """``num_points`` points (x, y) of the cubic Bezier curve from (0, 0) through the control points ``(control_x[i],
    control_y[i])`` to (1, 1), sampled at evenly spaced curve parameters; x comes out non-decreasing when the control
    x-coordinates are sorted and in [0, 1] (every term of the curve's derivative is then non-negative)."""
    t = np.linspace(0.0, 1.0, num_points)
    weights = (3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3)  # the (0, 0) end point's weight multiplies zero
    x = weights[0] * control_x[0] + weights[1] * control_x[1] + weights[2]
    y = weights[0] * control_y[0] + weights[1] * control_y[1] + weights[2]
    return np.maximum.accumulate(x), y  # rounding must not unsort x for np.interp


def _as_image_type(values: np.ndarray, img: NdarrayOrTensor) -> NdarrayOrTensor:
    """``values`` (in [0, 1]) as ``img``'s type and device, in its floating dtype or, for integer images, float32."""
    if isinstance(img, torch.Tensor):
        dtype = img.dtype if torch.is_floating_point(img) else torch.float32
    else:
        dtype = np.asarray(img).dtype
        dtype = dtype if np.issubdtype(dtype, np.floating) else np.float32
    return convert_to_dst_type(values, dst=img, dtype=dtype)[0]


class RandIntensityCurve(RandomizableTransform):
    """Map intensities in [0, 1] through a random monotone curve, increasing or (inverting the contrast) decreasing:
    the global intensity augmentation of single-source domain generalisation methods such as SLAug (Su et al., AAAI
    2023), which lets a model trained on one MRI sequence see contrast inversions (bSSFP -> T2).

    With probability ``prob`` the image is clipped to [0, 1] and mapped through a cubic Bezier curve from (0, 0) to
    (1, 1) with two random interior control points in [0, 1]^2. The control points' x-coordinates are sorted, so the
    curve is a function y(x), and so are their y-coordinates, so it is non-decreasing; it is sampled at ``num_points``
    points and evaluated by linear interpolation. With probability ``invert_prob`` the result is ``1 - y(x)`` instead, a
    non-increasing curve that inverts the contrast. The output stays in [0, 1].

    The same curve is applied to every channel, or with ``channel_wise`` one curve (and one inversion draw) per channel.
    A numpy array comes back as a numpy array, a tensor as a tensor on its device (a ``MetaTensor`` keeps its metadata);
    a floating dtype is kept, other dtypes (which cannot hold values in [0, 1]) come back as float32. The curve is drawn
    from ``R``: seed it with ``set_random_state`` (``Compose.set_random_state`` and
    :class:`~monai_ext.handlers.EpochSeeder` do so).

    Args:
        prob: probability of applying a curve; otherwise the image is returned unchanged.
        invert_prob: probability that an applied curve is inverted (``1 - y``).
        channel_wise: draw one curve per channel (the first dimension) instead of one for all channels.
        num_points: points the curve is sampled at before interpolating.

    Example::

        curve = RandIntensityCurve(prob=1.0, invert_prob=0.5).set_random_state(seed=0)
        curve(torch.rand(1, 96, 96))  # values still in [0, 1], contrast possibly inverted
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, prob: float = 0.1, invert_prob: float = 0.5, channel_wise: bool = False, num_points: int = 1001):
        RandomizableTransform.__init__(self, prob)
        if not 0.0 <= invert_prob <= 1.0:
            raise ValueError(f"invert_prob must be in [0, 1], got {invert_prob}.")
        if num_points < 2:
            raise ValueError(f"num_points must be at least 2, got {num_points}.")
        self.invert_prob = invert_prob
        self.channel_wise = channel_wise
        self.num_points = num_points
        # one (control_x, control_y, invert) per curve: a single one, or one per channel with channel_wise
        self.curves: list[tuple[np.ndarray, np.ndarray, bool]] = []

    def randomize(self, data: NdarrayOrTensor | None = None) -> None:
        """Draw whether to apply a curve and, if so, the curve(s); ``data`` (the image) gives the channel count for
        ``channel_wise``."""
        super().randomize(None)
        if not self._do_transform:
            return
        if self.channel_wise and data is None:
            raise ValueError("RandIntensityCurve with channel_wise=True needs the image to draw one curve per channel.")
        count = int(data.shape[0]) if self.channel_wise else 1
        self.curves = []
        for _ in range(count):
            control_x = np.sort(self.R.uniform(0.0, 1.0, size=2))
            control_y = np.sort(self.R.uniform(0.0, 1.0, size=2))
            self.curves.append((control_x, control_y, bool(self.R.rand() < self.invert_prob)))

    def _map(self, values: np.ndarray, curve: tuple[np.ndarray, np.ndarray, bool]) -> np.ndarray:
        control_x, control_y, invert = curve
        x, y = _bezier_curve(control_x, control_y, self.num_points)
        mapped = np.interp(np.clip(values, 0.0, 1.0), x, y)
        return 1.0 - mapped if invert else mapped

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Apply the curve to ``img`` (channel first); ``randomize=False`` reuses the last drawn curve."""
        if randomize:
            self.randomize(img)
        if not self._do_transform:
            return img
        values = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        if self.channel_wise:
            if len(self.curves) != values.shape[0]:
                raise ValueError(
                    f"RandIntensityCurve drew {len(self.curves)} channel curves, the image has {values.shape[0]} "
                    "channels."
                )
            out = np.stack([self._map(channel, curve) for channel, curve in zip(values, self.curves)])
        else:
            out = self._map(values, self.curves[0])
        return _as_image_type(out, img)


class RandIntensityCurved(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandIntensityCurve`: one draw per call, the same curve (or, with
    ``channel_wise``, the same curve per channel) for every key, so that several images of an item stay consistent.

    Args:
        keys: the image entries, usually ``"image"`` (never the label).
        prob: probability of applying a curve; otherwise the entries are left unchanged.
        invert_prob: probability that an applied curve is inverted (``1 - y``).
        channel_wise: one curve per channel; every key must then have the same number of channels.
        num_points: points the curve is sampled at before interpolating.
        allow_missing_keys: skip absent keys instead of raising ``KeyError``.

    Example (a bundle config)::

        {"_target_": "monai_ext.data.RandIntensityCurved", "keys": "image", "prob": 0.5, "invert_prob": 0.5}
    """

    backend = RandIntensityCurve.backend

    def __init__(
        self,
        keys: KeysCollection = "image",
        prob: float = 0.1,
        invert_prob: float = 0.5,
        channel_wise: bool = False,
        num_points: int = 1001,
        allow_missing_keys: bool = False,
    ):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.curve = RandIntensityCurve(
            prob=1.0, invert_prob=invert_prob, channel_wise=channel_wise, num_points=num_points
        )

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandIntensityCurved:
        super().set_random_state(seed, state)
        self.curve.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        first_key: Hashable = self.first_key(d)
        if first_key == ():
            return d
        self.curve.randomize(d[first_key])
        for key in self.key_iterator(d):
            d[key] = self.curve(d[key], randomize=False)
        return d


class RandClassIntensityCurve(RandomizableTransform):
    """Map each labelled structure's intensities through its own random curve: the local, class-wise counterpart of
    :class:`RandIntensityCurve`, after the local location-scale augmentation of SLAug (Su et al., AAAI 2023).

    One global curve keeps the order of tissue intensities (or reverses all of it), but other MRI sequences reorder
    tissues: blood is brighter than fat in bSSFP and darker than it in T2. Drawing one curve per label value, with the
    source domain's own labels, lets a model trained on one sequence see such reorderings. With probability ``prob``
    every label value present in ``label`` gets an independent :class:`RandIntensityCurve` (inverted with probability
    ``invert_prob``), applied to the pixels of that value; every pixel is labelled once, so the output stays in [0, 1].
    Curves are drawn in increasing label order, so a seeded transform repeats them.

    ``label`` is an index map: one channel (``(1, *spatial)``) or none (``spatial``), with the image's spatial shape.
    The image keeps its type and device as with :class:`RandIntensityCurve`.

    Args:
        prob: probability of applying the curves; otherwise the image is returned unchanged.
        invert_prob: probability that each class's curve is inverted.
        num_points: points each curve is sampled at before interpolating.

    Example::

        curves = RandClassIntensityCurve(prob=1.0).set_random_state(seed=0)
        label = torch.zeros(1, 96, 96)
        label[:, 30:60, 30:60] = 1
        curves(torch.rand(1, 96, 96), label)  # the square and the rest each through their own curve
    """

    backend = RandIntensityCurve.backend

    def __init__(self, prob: float = 0.1, invert_prob: float = 0.5, num_points: int = 1001):
        RandomizableTransform.__init__(self, prob)
        self.curve = RandIntensityCurve(prob=1.0, invert_prob=invert_prob, num_points=num_points)
        self.class_curves: dict[float, list[tuple[np.ndarray, np.ndarray, bool]]] = {}

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandClassIntensityCurve:
        super().set_random_state(seed, state)
        self.curve.set_random_state(state=self.R)  # one stream: the class curves follow this transform's seed
        return self

    def randomize(self, data: NdarrayOrTensor | None = None) -> None:
        """Draw whether to apply the curves and, if so, one per label value of ``data`` (the label)."""
        super().randomize(None)
        if not self._do_transform:
            return
        if data is None:
            raise ValueError("RandClassIntensityCurve needs the label to draw one curve per class.")
        values = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        self.class_curves = {}
        for value in np.unique(values):
            self.curve.randomize(None)
            self.class_curves[float(value)] = self.curve.curves

    def __call__(self, img: NdarrayOrTensor, label: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Apply one curve per class of ``label`` to ``img`` (channel first); ``randomize=False`` reuses the last
        drawn curves, which must cover every label value."""
        label_values = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
        spatial = tuple(img.shape[1:])
        if label_values.ndim == len(spatial) + 1 and label_values.shape[0] == 1:
            label_values = label_values[0]
        if label_values.shape != spatial:
            raise ValueError(
                f"RandClassIntensityCurve needs an index label of spatial shape {spatial} (one channel or none), got "
                f"shape {tuple(label.shape)} for an image of shape {tuple(img.shape)}."
            )
        if randomize:
            self.randomize(label_values)
        if not self._do_transform:
            return img
        values = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        missing = sorted(set(np.unique(label_values).tolist()) - set(self.class_curves))
        if missing:
            raise ValueError(f"RandClassIntensityCurve drew no curve for label values {missing}; randomize first.")
        out = np.zeros(values.shape, np.float32)
        for value, curves in self.class_curves.items():
            mask = np.broadcast_to(label_values == value, values.shape)
            self.curve.curves = curves
            out[mask] = np.asarray(self.curve(values[mask], randomize=False))
        return _as_image_type(out, img)


class RandClassIntensityCurved(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandClassIntensityCurve`: the curves are drawn from ``label_key``'s label values,
    once per call, and applied to every key.

    Args:
        keys: the image entries, usually ``"image"`` (never the label).
        label_key: the index label whose values choose the curve of each pixel.
        prob: probability of applying the curves; otherwise the entries are left unchanged.
        invert_prob: probability that each class's curve is inverted.
        num_points: points each curve is sampled at before interpolating.
        allow_missing_keys: skip absent keys instead of raising ``KeyError``.

    Example (a bundle config)::

        {"_target_": "monai_ext.data.RandClassIntensityCurved", "keys": "image", "label_key": "label", "prob": 0.5}
    """

    backend = RandClassIntensityCurve.backend

    def __init__(
        self,
        keys: KeysCollection = "image",
        label_key: str = "label",
        prob: float = 0.1,
        invert_prob: float = 0.5,
        num_points: int = 1001,
        allow_missing_keys: bool = False,
    ):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.label_key = label_key
        self.curves = RandClassIntensityCurve(prob=1.0, invert_prob=invert_prob, num_points=num_points)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandClassIntensityCurved:
        super().set_random_state(seed, state)
        self.curves.set_random_state(state=self.R)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        if self.label_key not in d:
            raise KeyError(f"RandClassIntensityCurved needs the label '{self.label_key}'; the item has {sorted(d)}.")
        first_key: Hashable = self.first_key(d)
        if first_key == ():
            return d
        self.curves.randomize(d[self.label_key])
        for key in self.key_iterator(d):
            d[key] = self.curves(d[key], d[self.label_key], randomize=False)
        return d

"""Synthetic short-axis cardiac MRI volumes with LV / myocardium / RV labels in three imitation sequences (domains).

Modelled on MS-CMRSeg 2019 (bSSFP, LGE and T2 sequences), the usual single-source domain generalisation set-up being
"train on bSSFP, test on LGE and T2". Labels here are 0 background, 1 LV blood pool, 2 left-ventricular myocardium,
3 RV blood pool. The real MS-CMRSeg label files use 500 (LV), 200 (MYO) and 600 (RV); map them to this convention with
MONAI::

    MapLabelValued(keys="label", orig_labels=[500, 200, 600], target_labels=[1, 2, 3])

(:data:`MSCMRSEG_LABEL_MAP` holds the same mapping). Unlike MS-CMRSeg, where the three sequences come from the same
patients, each synthetic domain holds different subjects, so no anatomy is shared between training and test domains.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import nibabel as nib
import numpy as np
from monai_ext.data.label_maps import MSCMRSEG_LABEL_MAP
from scipy import ndimage

from .common import (
    MARKER_FILE,
    check_count,
    check_image_size,
    ellipse_radius,
    normalized_grid,
    sample_rng,
    smooth_noise,
    split_counts,
    staged_output_dir,
    write_json,
)

__all__ = [
    "CardiacDomain",
    "CARDIAC_DOMAINS",
    "CARDIAC_LABELS",
    "MSCMRSEG_LABEL_MAP",
    "SLAUG_DEMO_DOMAINS",
    "render_cardiac_volume",
    "make_cardiac_dataset",
    "make_slaug_mscmrseg_release",
]

CARDIAC_LABELS = {"background": 0, "lv": 1, "myocardium": 2, "rv": 3}
# MS-CMRSeg 2019 label value -> value used here: monai_ext.data.MSCMRSEG_LABEL_MAP, exported here too.

# Tissue classes of the rendered anatomy and the CardiacDomain attribute giving each one's intensity.
_BACKGROUND, _LV, _MYO, _RV, _TISSUE, _FAT, _LUNG, _LIVER, _PATCH, _PAPILLARY, _RV_WALL = range(11)
_CLASS_INTENSITY = {
    _LV: "blood",
    _MYO: "myocardium",
    _RV: "blood",
    _TISSUE: "tissue",
    _FAT: "fat",
    _LUNG: "lung",
    _LIVER: "liver",
    _PATCH: "patch",
    _PAPILLARY: "myocardium",
    _RV_WALL: "myocardium",
}
# Tissue classes making up each label.
_LABEL_CLASSES = {"lv": (_LV, _PAPILLARY), "myocardium": (_MYO, _PATCH), "rv": (_RV,)}


@dataclass(frozen=True)
class CardiacDomain:
    """Appearance of one imitation MR sequence; intensities are in [0, 1] before scaling to int16 (x 1000).

    Attributes:
        description: readable summary.
        blood, myocardium, tissue, fat, lung, liver: mean intensity of each tissue.
        patch: intensity of myocardial patches (scar in LGE, oedema in T2; equal to ``myocardium`` where invisible).
        noise: standard deviation of the complex Gaussian noise (magnitude images: Rician).
        bias: strength of the smooth multiplicative bias field (coil sensitivity).
        blur: Gaussian blur sigma in pixels (partial volume, lower effective resolution).
    """

    description: str
    blood: float
    myocardium: float
    tissue: float
    fat: float
    lung: float
    liver: float
    patch: float
    noise: float
    bias: float
    blur: float


# fmt: off
CARDIAC_DOMAINS = {
    "bssfp": CardiacDomain(
        description="balanced SSFP cine: bright blood, dark myocardium, bright fat, sharp",
        blood=0.9, myocardium=0.22, tissue=0.35, fat=0.75, lung=0.04, liver=0.3, patch=0.22,
        noise=0.025, bias=0.15, blur=0.6,
    ),
    "lge": CardiacDomain(
        description="late gadolinium enhancement: greyer blood, nulled dark myocardium with bright scar, noisy",
        blood=0.5, myocardium=0.08, tissue=0.25, fat=0.55, lung=0.03, liver=0.35, patch=0.85,
        noise=0.05, bias=0.3, blur=0.8,
    ),
    "t2": CardiacDomain(
        description="T2-weighted black blood: dark blood pool, grey myocardium with brighter oedema, blurred",
        blood=0.12, myocardium=0.45, tissue=0.4, fat=0.7, lung=0.05, liver=0.3, patch=0.7,
        noise=0.04, bias=0.25, blur=1.2,
    ),
}
# fmt: on


def _slice_classes(yy: np.ndarray, xx: np.ndarray, anatomy: dict, position: float) -> np.ndarray:
    """Tissue class map of one short-axis slice at ``position`` (0 = base, 1 = apex)."""
    classes = np.full(yy.shape, _BACKGROUND, np.uint8)
    body = ellipse_radius(yy, xx, *anatomy["body_centre"], anatomy["body_ry"], anatomy["body_rx"])
    classes[body < 1.0] = _FAT  # subcutaneous fat: the outer ring of the body
    classes[body < 0.93] = _TISSUE
    for centre, radii in anatomy["lungs"]:
        classes[ellipse_radius(yy, xx, *centre, *radii) < 1.0] = _LUNG
    liver_radius = ellipse_radius(yy, xx, *anatomy["liver_centre"], 0.35, 0.45)
    classes[(liver_radius < 1.0) & (body < 0.93)] = _LIVER

    cy, cx = anatomy["centre"]
    lv_radius = anatomy["lv_radius"] * (1.0 - 0.55 * position**1.5)
    epi_radius = lv_radius + anatomy["wall"] * (1.0 - 0.2 * position)
    shape = dict(cy=cy, cx=cx, angle=anatomy["angle"])
    epi = ellipse_radius(yy, xx, ry=epi_radius * anatomy["elongation"], rx=epi_radius, **shape)
    classes[epi < 1.0 + 0.25 * anatomy["epicardial_fat"]] = _FAT  # epicardial fat rim
    # RV: an ellipse beside the LV, wrapped around it (the septum belongs to the LV myocardium); it tapers to the apex.
    rv_scale = max(0.0, 1.0 - position) ** 0.7
    if rv_scale > 0.05:
        direction = anatomy["rv_direction"]
        rv_centre = (cy + np.sin(direction) * epi_radius, cx + np.cos(direction) * epi_radius)
        rv = ellipse_radius(
            yy, xx, *rv_centre, epi_radius * 0.8 * rv_scale, epi_radius * 1.4 * rv_scale, direction - np.pi / 2
        )
        classes[(rv < 1.12) & (epi >= 1.0)] = _RV_WALL
        classes[(rv < 1.0) & (epi >= 1.08)] = _RV
    classes[epi < 1.0] = _MYO
    patch = (epi < 1.0) & (np.cos(np.arctan2(yy - cy, xx - cx) - anatomy["patch_angle"]) > anatomy["patch_extent"])
    classes[patch] = _PATCH
    lv = ellipse_radius(yy, xx, ry=lv_radius * anatomy["elongation"], rx=lv_radius, **shape) < 1.0
    classes[lv] = _LV
    # Papillary muscles: myocardium-like dots in the blood pool, labelled LV cavity (ACDC/MS-CMRSeg convention).
    for papillary_angle in anatomy["papillary_angles"]:
        py = cy + np.sin(papillary_angle) * lv_radius * 0.65
        px = cx + np.cos(papillary_angle) * lv_radius * 0.65
        dot = (yy - py) ** 2 + (xx - px) ** 2 < (0.12 * lv_radius) ** 2
        classes[dot & lv] = _PAPILLARY
    return classes


def render_cardiac_volume(
    rng: np.random.Generator, image_size: int, slices: int, domain: CardiacDomain
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one subject's short-axis stack from base (slice 0) to apex (last slice).

    Returns:
        ``(image, label)`` of shape ``(H, W, slices)``: int16 intensities (about 0-1200) and uint8 labels
        (0 background, 1 LV, 2 myocardium, 3 RV).
    """
    anatomy = {
        "body_centre": (rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)),
        "body_ry": rng.uniform(0.7, 0.8),
        "body_rx": rng.uniform(0.88, 0.97),
        "lungs": [
            ((rng.uniform(-0.1, 0.15), side * rng.uniform(0.5, 0.6)), (rng.uniform(0.35, 0.45), rng.uniform(0.2, 0.28)))
            for side in (-1.0, 1.0)
        ],
        "liver_centre": (rng.uniform(0.35, 0.5), rng.uniform(-0.45, -0.3)),
        "centre": (rng.uniform(-0.1, 0.1), rng.uniform(-0.08, 0.12)),
        "lv_radius": rng.uniform(0.17, 0.24),
        "wall": rng.uniform(0.07, 0.1),
        "elongation": rng.uniform(0.95, 1.12),
        "angle": rng.uniform(0, np.pi),
        "epicardial_fat": rng.uniform(0.0, 1.0),
        "rv_direction": np.pi + rng.uniform(-0.5, 0.3),  # RV on the image's left, as in standard short-axis display
        "patch_angle": rng.uniform(0, 2 * np.pi),
        "patch_extent": rng.uniform(0.3, 0.9),  # cosine threshold: smaller = wider scar/oedema sector
        "papillary_angles": (rng.uniform(0.3, 1.0), rng.uniform(1.8, 2.6)),
    }
    yy, xx = normalized_grid(image_size)
    intensity = np.zeros(len(_CLASS_INTENSITY) + 1, np.float32)  # indexed by tissue class; background stays 0
    for tissue_class, attribute in _CLASS_INTENSITY.items():
        intensity[tissue_class] = getattr(domain, attribute)
    label_of_class = np.zeros_like(intensity, dtype=np.uint8)
    for name, tissue_classes in _LABEL_CLASSES.items():
        label_of_class[list(tissue_classes)] = CARDIAC_LABELS[name]
    images, labels = [], []
    positions = np.linspace(0.0, 1.0, slices) if slices > 1 else np.array([0.3])
    bias = np.exp(domain.bias * smooth_noise(rng, image_size, cells=3))
    for position in positions:
        classes = _slice_classes(yy, xx, anatomy, float(position))
        labels.append(label_of_class[classes])
        image = intensity[classes] * (1.0 + 0.08 * smooth_noise(rng, image_size, cells=16))
        image = ndimage.gaussian_filter(image, domain.blur) * bias
        noise = rng.normal(0.0, domain.noise, (2,) + image.shape)
        images.append(np.sqrt((image + noise[0]) ** 2 + noise[1] ** 2))  # magnitude of complex data: Rician noise
    image = np.round(np.clip(np.stack(images, axis=-1), 0.0, 2.0) * 1000).astype(np.int16)
    return image, np.stack(labels, axis=-1)


def _check_domains(domains: Sequence[str] | None) -> list[str]:
    if domains is None:
        return list(CARDIAC_DOMAINS)
    if isinstance(domains, str):
        domains = [domains]
    unknown = [d for d in domains if d not in CARDIAC_DOMAINS]
    if unknown or not domains:
        raise ValueError(f"Unknown cardiac domain(s) {unknown or domains}; choose from {list(CARDIAC_DOMAINS)}.")
    return list(dict.fromkeys(domains))


def _affine(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    """Voxel-to-world (RAS, mm) affine with the given spacing and the volume centred on the origin."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2.0 * np.asarray(spacing)
    return affine


def _write_nifti(array: np.ndarray, affine: np.ndarray, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units(xyz="mm")
    image.set_qform(affine, code=1)  # scanner coordinates
    image.set_sform(affine, code=1)
    nib.save(image, path)  # nibabel's gzip stream has no timestamp: identical content gives identical bytes


def make_cardiac_dataset(
    out_dir: str | os.PathLike,
    n_per_domain: int = 20,
    image_size: int = 128,
    slices: int = 4,
    seed: int = 0,
    domains: Sequence[str] | None = None,
    spacing: Sequence[float] = (1.25, 1.25, 8.0),
    test_fraction: float = 0.2,
    overwrite: bool = False,
) -> dict:
    """Write a synthetic multi-sequence short-axis cardiac MRI dataset as NIfTI volumes.

    Layout (``<d>`` one of :data:`CARDIAC_DOMAINS`: ``bssfp``, ``lge``, ``t2``)::

        out_dir/<d>/images/subject_000.nii.gz   int16 (H, W, slices), slice 0 at the base, affine with ``spacing``
        out_dir/<d>/labels/subject_000.nii.gz   uint8 (H, W, slices): 0 background, 1 LV, 2 myocardium, 3 RV
        out_dir/<d>/datalist.json               {"training": [...], "test": [...]}, items {"image", "label", "domain"},
                                                paths relative to out_dir/<d> (MONAI decathlon-style datalist)
        out_dir/domains.json                    each domain's description, intensities and counts; label values
        out_dir/synthetic.json                  generator name, parameters and counts

    The last ``round(n_per_domain * test_fraction)`` subjects of each domain are listed under "test". Subject ``i`` of
    a domain is the same for any count and whichever other domains are generated. Real MS-CMRSeg labels (500 LV,
    200 MYO, 600 RV) map to these with ``MapLabelValued(keys="label", orig_labels=[500, 200, 600],
    target_labels=[1, 2, 3])``.

    Args:
        out_dir: output folder; must be missing or empty unless ``overwrite`` (replaces an earlier synthetic dataset).
        n_per_domain: subjects per domain.
        image_size: in-plane size in pixels (>= 32).
        slices: short-axis slices per subject, base to apex.
        seed: random seed; the same seed gives byte-identical files.
        domains: names of the domains to write (default all three).
        spacing: voxel size in mm (in-plane x, in-plane y, slice distance).
        test_fraction: fraction of each domain listed under "test".
        overwrite: replace an existing synthetic dataset in ``out_dir``.

    Returns:
        summary dict: ``out_dir``, ``counts`` per domain, ``datalists`` (domain -> path).

    Example::

        make_cardiac_dataset("data/cardiac", n_per_domain=10, image_size=96, slices=6)
        train = load_text_datalist("data/cardiac/bssfp/datalist.json", key="training")
    """
    n_per_domain = check_count("n_per_domain", n_per_domain, minimum=1)
    image_size = check_image_size(image_size)
    slices = check_count("slices", slices, minimum=1)
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be three positive voxel sizes in mm, got {spacing}.")
    names = _check_domains(domains)
    n_training, n_test = split_counts(n_per_domain, test_fraction)
    affine = _affine((image_size, image_size, slices), spacing)
    out_dir = os.path.abspath(os.fspath(out_dir))
    description = {}
    with staged_output_dir(out_dir, overwrite=overwrite) as staging:
        for name in names:
            domain = CARDIAC_DOMAINS[name]
            domain_index = list(CARDIAC_DOMAINS).index(name)  # fixed per name, so domains are independent of each other
            items = []
            for i in range(n_per_domain):
                image, label = render_cardiac_volume(sample_rng(seed, domain_index, i), image_size, slices, domain)
                item = {
                    "image": f"images/subject_{i:03d}.nii.gz",
                    "label": f"labels/subject_{i:03d}.nii.gz",
                    "domain": name,
                }
                _write_nifti(image, affine, os.path.join(staging, name, item["image"]))
                _write_nifti(label, affine, os.path.join(staging, name, item["label"]))
                items.append(item)
            write_json(
                {"training": items[:n_training], "test": items[n_training:]},
                os.path.join(staging, name, "datalist.json"),
            )
            description[name] = {**asdict(domain), "n_training": n_training, "n_test": n_test}
        write_json(
            {
                "domains": description,
                "labels": CARDIAC_LABELS,
                "mscmrseg_label_map": {str(k): v for k, v in MSCMRSEG_LABEL_MAP.items()},
            },
            os.path.join(staging, "domains.json"),
        )
        summary = {
            "generator": "make_cardiac_dataset",
            "parameters": {
                "image_size": image_size,
                "slices": slices,
                "seed": int(seed),
                "spacing": list(spacing),
                "test_fraction": float(test_fraction),
            },
            "counts": {name: {"training": n_training, "test": n_test} for name in names},
        }
        write_json(summary, os.path.join(staging, MARKER_FILE))
    return {
        **summary,
        "out_dir": out_dir,
        "datalists": {name: os.path.join(out_dir, name, "datalist.json") for name in names},
    }


# Our label index (1 LV, 2 myocardium, 3 RV) -> SLAug's release value (1 myocardium, 2 LV, 3 RV: its LABEL_NAME
# "bg", "Myocardium", "Lventricle", "Rventricle").
_SLAUG_LABEL_VALUES = np.array([0, 2, 1, 3], np.uint8)

# SLAug's release folders and the imitation sequences drawn into them.
SLAUG_DEMO_DOMAINS = {"bSSFP": "bssfp", "LGE": "lge"}


def make_slaug_mscmrseg_release(
    out_dir: str | os.PathLike,
    patients: int = 45,
    image_size: int = 64,
    slices: int = 3,
    seed: int = 0,
    spacing: Sequence[float] = (1.25, 1.25, 8.0),
    overwrite: bool = False,
) -> dict:
    """Write a synthetic stand-in of SLAug's preprocessed MS-CMRSeg release (its ``data/cardiac/processed`` folder)
    with its folder and file names and label values, for dry runs of the ``mscmrseg_slaug`` DG protocol
    (:func:`monai_ext.data.prepare_slaug_mscmrseg`).

    Layout::

        out_dir/bSSFP/image_<id>.nii.gz   float32 (H, W, slices) short-axis volume, ids 1..patients
        out_dir/bSSFP/label_<id>.nii.gz   uint8: 0 background, 1 myocardium, 2 LV, 3 RV (SLAug's order)
        out_dir/LGE/image_<id>.nii.gz, label_<id>.nii.gz
        out_dir/synthetic.json            generator name, parameters and counts

    As in MS-CMRSeg, patient ``<id>`` of both sequences is the same heart (the same anatomy, drawn with each
    sequence's appearance of :data:`CARDIAC_DOMAINS`).

    Args:
        out_dir: output folder; must be missing or empty unless ``overwrite`` (replaces an earlier synthetic set).
        patients: patients per sequence (SLAug's split uses 1-45).
        image_size: in-plane size in pixels (>= 32).
        slices: short-axis slices per volume.
        seed: random seed; the same seed gives byte-identical files.
        spacing: voxel size in mm.
        overwrite: replace an existing synthetic dataset in ``out_dir``.

    Returns:
        summary dict: ``out_dir``, ``counts`` per sequence.
    """
    patients = check_count("patients", patients, minimum=1)
    image_size = check_image_size(image_size)
    slices = check_count("slices", slices, minimum=1)
    affine = _affine((image_size, image_size, slices), tuple(float(s) for s in spacing))
    out_dir = os.path.abspath(os.fspath(out_dir))
    with staged_output_dir(out_dir, overwrite=overwrite) as staging:
        for folder, name in SLAUG_DEMO_DOMAINS.items():
            for patient in range(1, patients + 1):
                # The same generator state per patient in both sequences: the same heart.
                image, label = render_cardiac_volume(
                    sample_rng(seed, 7, patient), image_size, slices, CARDIAC_DOMAINS[name]
                )
                _write_nifti(image.astype(np.float32), affine, os.path.join(staging, folder, f"image_{patient}.nii.gz"))
                _write_nifti(
                    _SLAUG_LABEL_VALUES[label], affine, os.path.join(staging, folder, f"label_{patient}.nii.gz")
                )
        summary = {
            "generator": "make_slaug_mscmrseg_release",
            "parameters": {"image_size": image_size, "slices": slices, "seed": int(seed), "spacing": list(spacing)},
            "counts": dict.fromkeys(SLAUG_DEMO_DOMAINS, patients),
        }
        write_json(summary, os.path.join(staging, MARKER_FILE))
    return {**summary, "out_dir": out_dir}

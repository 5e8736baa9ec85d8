"""Synthetic chest X-rays whose report names a subset of the visible lesions (QaTa-COV19 / LViT style).

Each image shows 1-4 bright, irregular lesions, each in a different lung zone; the report names at least one of them
and the mask holds exactly the named ones, so a model must read the report to segment correctly. A per-lesion zone map
is written too, from which the mask of any subset of zones can be derived (counterfactual reports).

Laterality follows radiology convention: "left" and "right" are the PATIENT's sides. A frontal (PA) chest X-ray is
viewed as if facing the patient, so the patient's left lung is on the image's right (larger column index) and the heart
bulges into the image's right half.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from .common import (
    MARKER_FILE,
    check_count,
    check_image_size,
    ellipse_radius,
    normalized_grid,
    sample_rng,
    smooth_noise,
    soft_inside,
    staged_output_dir,
    write_json,
    write_png,
)

__all__ = [
    "LUNG_ZONES",
    "LVIT_SPLITS",
    "compose_report",
    "parse_report_zones",
    "mask_for_zones",
    "render_chest_xray",
    "draw_referred_sample",
    "make_chest_xray_dataset",
    "make_rereported_split",
    "lung_zone_partition",
    "posterior_ribs",
    "lvit_split_counts",
    "write_lvit_table",
    "write_lvit_splits",
    "rereport_lvit_splits",
    "copy_sample_files",
    "other_subsets",
]

# Zone k (1-based) of a zone map is LUNG_ZONES[k - 1]. Sides are the patient's (see the module docstring).
LUNG_ZONES = ("upper left", "middle left", "lower left", "upper right", "middle right", "lower right")
LEVELS = ("upper", "middle", "lower")
SIDES = ("left", "right")

# datalist key -> LViT folder prefix; the index is part of each sample's random key.
LVIT_SPLITS = {"training": "Train", "validation": "Val", "test": "Test"}
# Random-key offset of the re-reported copies (the original images are keyed by the split index).
REREPORT_KEY = 100
_SUBFOLDERS = ("img", "labelcol", "labelzones")

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
OPENERS = ("{laterality} pulmonary infection", "{laterality} lung infection")
COUNT_PHRASES = (("infected area", "infected areas"), ("infected region", "infected regions"), ("lesion", "lesions"))
ZONE_PHRASES = ("{level} {side} lung", "{side} {level} lung", "the {level} zone of the {side} lung")

_ZONE_PATTERN = re.compile(
    r"\b(?:(?P<level1>upper|middle|lower)\s+(?P<side1>left|right)"
    r"|(?P<side2>left|right)\s+(?P<level2>upper|middle|lower)"
    r"|(?P<level3>upper|middle|lower)\s+zone\s+of\s+the\s+(?P<side3>left|right))\b",
    re.IGNORECASE,
)


def _check_zones(zones: Sequence[str]) -> list[str]:
    if isinstance(zones, str):
        raise ValueError(f"zones must be a list of zone names, got the string '{zones}'.")
    unknown = [z for z in zones if z not in LUNG_ZONES]
    if unknown:
        raise ValueError(f"Unknown lung zone(s) {unknown}; valid zones are {list(LUNG_ZONES)}.")
    if len(set(zones)) != len(zones):
        raise ValueError(f"Lung zones must be distinct, got {list(zones)}.")
    return sorted(zones, key=LUNG_ZONES.index)


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def compose_report(zones: Sequence[str], rng: np.random.Generator | None = None) -> str:
    """QaTa-style report naming the given lung zones.

    Args:
        zones: one or more distinct names from :data:`LUNG_ZONES` (any order; named in ``LUNG_ZONES`` order).
        rng: picks among equivalent phrasings; ``None`` gives the first (canonical) phrasing.

    Returns:
        e.g. ``"Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."``;
        :func:`parse_report_zones` recovers ``zones`` from any phrasing.

    Example::

        compose_report(["middle right"])
        # 'Unilateral pulmonary infection, one infected area, middle right lung.'
    """
    zones = _check_zones(zones)
    if not zones:
        raise ValueError("A report must name at least one lung zone.")
    if len(zones) >= len(NUMBER_WORDS):
        raise ValueError(f"At most {len(NUMBER_WORDS) - 1} zones can be named, got {len(zones)}.")

    def pick(options):
        return options[0] if rng is None else options[int(rng.integers(len(options)))]

    laterality = "Bilateral" if len({z.split()[1] for z in zones}) == 2 else "Unilateral"
    opener = pick(OPENERS).format(laterality=laterality)
    singular, plural = pick(COUNT_PHRASES)
    count = f"{NUMBER_WORDS[len(zones)]} {singular if len(zones) == 1 else plural}"
    zone_phrase = pick(ZONE_PHRASES)
    places = [zone_phrase.format(level=z.split()[0], side=z.split()[1]) for z in zones]
    return f"{opener}, {count}, {_join(places)}."


def parse_report_zones(text: str) -> list[str]:
    """Lung zones named in a report (inverse of :func:`compose_report`).

    Recognises "upper left", "left upper" and "upper zone of the left ..." (any case), returns each zone once, in
    :data:`LUNG_ZONES` order; an empty list if the report names no zone.

    Example::

        parse_report_zones("Bilateral lung infection, two lesions, left lower lung and right upper lung.")
        # ['lower left', 'upper right']
    """
    if not isinstance(text, str):
        raise ValueError(f"Report must be a string, got {type(text).__name__}.")
    found = set()
    for match in _ZONE_PATTERN.finditer(text):
        level = next(match.group(g) for g in ("level1", "level2", "level3") if match.group(g))
        side = next(match.group(g) for g in ("side1", "side2", "side3") if match.group(g))
        found.add(f"{level.lower()} {side.lower()}")
    return sorted(found, key=LUNG_ZONES.index)


def mask_for_zones(zone_map: np.ndarray, zones: Sequence[str]) -> np.ndarray:
    """Binary mask (bool, shape of ``zone_map``) of the lesions in ``zones``.

    Args:
        zone_map: integer array, value k in 1..6 on the lesion lying in zone ``LUNG_ZONES[k - 1]``, 0 elsewhere
            (the ``labelzones/zones_<name>.png`` files).
        zones: names from :data:`LUNG_ZONES`; zones without a lesion add nothing.

    Example::

        zone_map = np.asarray(PIL.Image.open("Train_Folder/labelzones/zones_train_0000.png"))
        mask = mask_for_zones(zone_map, parse_report_zones(report))  # the written mask is mask * 255
    """
    zones = _check_zones(zones)
    zone_map = np.asarray(zone_map)
    if not np.issubdtype(zone_map.dtype, np.integer):
        raise ValueError(f"zone_map must hold integer zone indices, got dtype {zone_map.dtype}.")
    return np.isin(zone_map, [LUNG_ZONES.index(z) + 1 for z in zones])


def lung_zone_partition(lungs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Zone index map (``LUNG_ZONES.index(z) + 1`` on zone ``z``, 0 outside the lungs) splitting each lung into thirds
    of its height.

    Args:
        lungs: bool mask per patient side (``"left"``, ``"right"``), all of one shape.
    """
    shape = next(iter(lungs.values())).shape
    zone_map = np.zeros(shape, np.uint8)
    for side, lung in lungs.items():
        rows = np.flatnonzero(lung.any(axis=1))
        if rows.size == 0:
            continue
        edges = np.linspace(rows[0], rows[-1] + 1, len(LEVELS) + 1)
        row_level = np.clip(np.searchsorted(edges, np.arange(shape[0]), side="right") - 1, 0, len(LEVELS) - 1)
        for level_index, level in enumerate(LEVELS):
            zone_map[(row_level == level_index)[:, None] & lung] = LUNG_ZONES.index(f"{level} {side}") + 1
    return zone_map


def posterior_ribs(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Soft layer in [0, 1] of the posterior ribs: evenly spaced bands following an arc that drops laterally, on both
    sides of the spine (``yy``, ``xx`` from :func:`~monai_ext.demo.common.normalized_grid`)."""
    rib_width = rng.uniform(0.025, 0.035)
    rib_spacing = rng.uniform(0.14, 0.17)
    lateral = np.clip((np.abs(xx) - 0.05) / 0.75, 0.0, 1.0)
    rib_coordinate = (yy - 0.4 * (1.0 - np.sqrt(1.0 - lateral**2)) - rng.uniform(-0.8, -0.7)) / rib_spacing
    nearest_rib = np.clip(np.round(rib_coordinate), 0, 7)
    ribs = np.clip(1.0 - ((rib_coordinate - nearest_rib) * rib_spacing / rib_width) ** 2, 0.0, 1.0)
    return ribs * (np.abs(xx) > 0.08)  # not over the spine


def _lesion(
    rng: np.random.Generator, zone_region: np.ndarray, yy: np.ndarray, xx: np.ndarray, roughness: np.ndarray
) -> np.ndarray:
    """One irregular blob (bool mask) inside ``zone_region``: an ellipse whose border is perturbed by smooth noise.

    The centre lies well inside the zone and the ellipse is sized to the room around it; the blob is clipped to the
    zone (lesions of different zones never share pixels) and the part connected to its centre kept.
    """
    size = zone_region.shape[0]
    room = ndimage.distance_transform_edt(np.pad(zone_region, 1))[1:-1, 1:-1]
    candidates = np.argwhere(room >= 0.6 * room.max())
    cy_px, cx_px = candidates[int(rng.integers(len(candidates)))]
    reach = room[cy_px, cx_px] * 2.0 / size  # distance to the zone border in normalised units
    radius = ellipse_radius(
        yy,
        xx,
        yy[cy_px, cx_px],
        xx[cy_px, cx_px],
        reach * rng.uniform(0.8, 1.3),
        reach * rng.uniform(0.8, 1.3),
        rng.uniform(0, np.pi),
    )
    # Noise relative to its value at the centre: the border wobbles but the centre always belongs to the lesion.
    blob = (1.0 - radius + 0.25 * (roughness - roughness[cy_px, cx_px]) > 0) & zone_region
    components, _ = ndimage.label(blob)
    return components == components[cy_px, cx_px]


def render_chest_xray(
    rng: np.random.Generator, image_size: int, n_lesions: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Draw one frontal chest X-ray with ``n_lesions`` lesions in distinct, random lung zones.

    Returns:
        ``(image, zone_map, zones)``: uint8 ``(H, W)`` image, uint8 zone map (value ``LUNG_ZONES.index(z) + 1`` on the
        lesion in zone ``z``, 0 elsewhere) and the zones holding a lesion, in ``LUNG_ZONES`` order.
    """
    if not 1 <= n_lesions <= len(LUNG_ZONES):
        raise ValueError(f"n_lesions must be in 1..{len(LUNG_ZONES)}, got {n_lesions}.")
    yy, xx = normalized_grid(image_size)
    edge = 4.0 / image_size

    body = soft_inside(
        ellipse_radius(
            yy,
            xx,
            0.05 + rng.uniform(-0.03, 0.03),
            rng.uniform(-0.03, 0.03),
            rng.uniform(0.98, 1.08),
            rng.uniform(0.82, 0.9),
        ),
        3 * edge,
    )
    heart_radius = ellipse_radius(
        yy,
        xx,
        rng.uniform(0.2, 0.3),
        rng.uniform(0.08, 0.16),
        rng.uniform(0.22, 0.28),
        rng.uniform(0.25, 0.32),
        rng.uniform(-0.3, 0.1),
    )
    heart = soft_inside(heart_radius, 6 * edge)
    mediastinum_half_width = rng.uniform(0.09, 0.12)
    mediastinum = np.clip((mediastinum_half_width - np.abs(xx)) / (6 * edge) + 0.5, 0, 1) * (yy > -0.85)

    lung_soft = np.zeros_like(yy)
    lungs = {}
    # Patient's right lung on the image's left (negative x), patient's left lung on the image's right.
    for side, sign in (("right", -1.0), ("left", 1.0)):
        radius = ellipse_radius(
            yy,
            xx,
            rng.uniform(-0.1, -0.02),
            sign * rng.uniform(0.36, 0.42),
            rng.uniform(0.55, 0.65),
            rng.uniform(0.24, 0.3),
            sign * rng.uniform(0.0, 0.12),
        )
        lung_soft = np.maximum(lung_soft, soft_inside(radius, 4 * edge))
        lungs[side] = (radius < 1.0) & (heart_radius >= 1.0) & (np.abs(xx) >= mediastinum_half_width)
    lung_soft *= (1.0 - heart) * (1.0 - mediastinum)

    ribs = posterior_ribs(rng, yy, xx)

    zone_regions = lung_zone_partition(lungs)
    available = [k for k in range(1, len(LUNG_ZONES) + 1) if (zone_regions == k).any()]
    chosen = sorted(rng.choice(available, size=min(n_lesions, len(available)), replace=False).tolist())
    roughness = smooth_noise(rng, image_size, cells=10)
    zone_map = np.zeros((image_size, image_size), np.uint8)
    lesion_layer = np.zeros_like(yy)
    for zone in chosen:
        lesion = _lesion(rng, zone_regions == zone, yy, xx, roughness)
        zone_map[lesion] = zone
        lesion_layer += lesion * rng.uniform(0.3, 0.45)
    lesion_texture = 0.75 + 0.25 * np.clip(smooth_noise(rng, image_size, cells=24), -1, 1)
    lesion_layer = ndimage.gaussian_filter(lesion_layer * lesion_texture, sigma=image_size / 120)

    lung_markings = 0.03 * smooth_noise(rng, image_size, cells=max(8, image_size // 8))
    image = (
        0.04
        + body * (0.5 - 0.3 * lung_soft + 0.12 * heart + 0.1 * mediastinum + 0.1 * ribs + lung_soft * lung_markings)
        + lesion_layer
    )
    image = np.clip(image, 0.0, 1.0) ** rng.uniform(0.8, 1.25)
    image = (image - 0.5) * rng.uniform(0.85, 1.15) + 0.5 + rng.uniform(-0.05, 0.05)
    image = ndimage.gaussian_filter(image, sigma=rng.uniform(0.5, 1.0) * image_size / 224)
    image = image + rng.normal(0.0, rng.uniform(0.01, 0.03), image.shape)
    image = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    return image, zone_map, [LUNG_ZONES[k - 1] for k in chosen]


def draw_referred_sample(
    rng: np.random.Generator, image_size: int, name_all_lesions: bool = False
) -> tuple[np.ndarray, np.ndarray, list[str], list[str], str]:
    """One report-referred chest X-ray: 1-4 lesions, a report naming a random non-empty subset of them (all of them
    with ``name_all_lesions``).

    Returns:
        ``(image, zone_map, zones present, zones named, report)``; the mask is ``mask_for_zones(zone_map, named)``.
    """
    image, zone_map, present = render_chest_xray(rng, image_size, n_lesions=int(rng.integers(1, 5)))
    named = sorted(
        rng.choice(present, size=int(rng.integers(1, len(present) + 1)), replace=False).tolist(), key=LUNG_ZONES.index
    )
    if name_all_lesions:
        named = present
    return image, zone_map, present, named, compose_report(named, rng)


def lvit_split_counts(n_train: int, n_val: int, n_test: int) -> dict[str, int]:
    """Validated sample counts per datalist key of :data:`LVIT_SPLITS`."""
    return {
        "training": check_count("n_train", n_train),
        "validation": check_count("n_val", n_val),
        "test": check_count("n_test", n_test),
    }


def write_lvit_table(path: str, rows: Iterable[tuple[str, str]]) -> None:
    """Write an LViT ``<S>_text.csv``: columns ``Image`` (mask file name) and ``Description`` (report)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("Image", "Description"))
        writer.writerows(rows)


def write_lvit_splits(
    out_dir: str | os.PathLike,
    samples: Mapping[str, Sequence],
    subfolders: Sequence[str],
    write_sample: Callable[[np.random.Generator, str, str, int, object], dict | None],
    summarize: Callable[[dict[str, list[dict]]], dict],
    seed: int,
    key_offset: int = 0,
    overwrite: bool = False,
) -> dict:
    """Write datalist splits in LViT layout, staged and renamed into place when complete (the frame of the LViT-layout
    generators of this package).

    Args:
        out_dir: output folder (see :func:`~monai_ext.demo.common.staged_output_dir`).
        samples: datalist key (of :data:`LVIT_SPLITS`) -> that split's samples, e.g. ``range(n)`` or source records.
        subfolders: folders created in every ``<S>_Folder``, even for an empty split (a complete layout).
        write_sample: ``write_sample(rng, staging, split, index, sample)`` writes one sample's files under
            ``staging`` and returns its datalist item (with ``label`` and ``text``), or None to leave it out.
        summarize: the generator's summary (written to :data:`~monai_ext.demo.common.MARKER_FILE`) from the datalist.
        seed: dataset seed; sample ``index`` of a split draws from ``sample_rng(seed, key_offset + split_index, index)``.
        overwrite: replace an earlier synthetic dataset in ``out_dir``.

    Returns:
        the summary with ``out_dir`` and ``datalist`` (path of ``datalist.json``) added.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    datalist: dict[str, list[dict]] = {}
    with staged_output_dir(out_dir, overwrite=overwrite) as staging:
        for split, split_samples in samples.items():
            prefix = LVIT_SPLITS[split]
            folder = f"{prefix}_Folder"
            for subfolder in subfolders:
                os.makedirs(os.path.join(staging, folder, subfolder))
            items = []
            for i, sample in enumerate(split_samples):
                rng = sample_rng(seed, key_offset + list(LVIT_SPLITS).index(split), i)
                item = write_sample(rng, staging, split, i, sample)
                if item is not None:
                    items.append(item)
            rows = [(os.path.basename(item["label"]), item["text"]) for item in items]
            write_lvit_table(os.path.join(staging, folder, f"{prefix}_text.csv"), rows)
            datalist[split] = items
        write_json(datalist, os.path.join(staging, "datalist.json"))
        summary = summarize(datalist)
        write_json(summary, os.path.join(staging, MARKER_FILE))
    return {**summary, "out_dir": out_dir, "datalist": os.path.join(out_dir, "datalist.json")}


def copy_sample_files(dataset_dir: str, staging: str, record: Mapping[str, str], keys: Iterable[str]) -> None:
    """Copy the files ``record[key]`` (paths relative to the dataset folder) from ``dataset_dir`` to ``staging``."""
    for key in keys:
        shutil.copyfile(os.path.join(dataset_dir, record[key]), os.path.join(staging, record[key]))


def other_subsets(present: Sequence, named: Sequence) -> list[list]:
    """The non-empty subsets of ``present`` (each in ``present`` order) other than ``named``."""
    subsets = [[p for j, p in enumerate(present) if bits >> j & 1] for bits in range(1, 2 ** len(present))]
    return [subset for subset in subsets if subset != list(named)]


def rereport_lvit_splits(
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    splits: str | Sequence[str],
    subfolders: Sequence[str],
    rereport_sample: Callable[[np.random.Generator, str, str, dict], dict | None],
    summary: Mapping,
    source_generator: str,
    seed: int,
    overwrite: bool = False,
) -> dict:
    """Copy splits of an LViT-layout synthetic dataset with new reports (the frame of the re-reported split writers).

    Args:
        dataset_dir: folder written by ``source_generator`` (its ``datalist.json`` is read).
        out_dir: new dataset folder, same layout (see :func:`write_lvit_splits`).
        splits: datalist keys among ``"training"``, ``"validation"``, ``"test"``.
        subfolders: folders of every ``<S>_Folder``.
        rereport_sample: ``rereport_sample(rng, dataset_dir, staging, record)`` writes the copy of one source record
            under ``staging`` and returns its datalist item, or None when the record has no new report (skipped).
        summary: the generator's summary fields (``generator``, ``mode``, ...); ``source``, ``counts``, ``skipped``
            per split and ``seed`` are added.
        source_generator: name of the generator that writes ``dataset_dir`` (for the error message).
        seed: sample ``i`` of a split draws from ``sample_rng(seed, REREPORT_KEY + split_index, i)``.
        overwrite: replace an earlier synthetic dataset in ``out_dir``.
    """
    splits = [splits] if isinstance(splits, str) else list(splits)
    unknown = [split for split in splits if split not in LVIT_SPLITS]
    if unknown or not splits:
        raise ValueError(f"splits must be among {list(LVIT_SPLITS)}, got {splits!r}.")
    dataset_dir = os.path.abspath(os.fspath(dataset_dir))
    datalist_path = os.path.join(dataset_dir, "datalist.json")
    if not os.path.isfile(datalist_path):
        raise FileNotFoundError(f"{datalist_path} not found: {dataset_dir} is not a {source_generator} folder.")
    with open(datalist_path, encoding="utf-8") as f:
        source = json.load(f)
    skipped = dict.fromkeys(splits, 0)

    def write_sample(rng, staging, split, index, record):
        item = rereport_sample(rng, dataset_dir, staging, record)
        if item is None:
            skipped[split] += 1
        return item

    def summarize(datalist):
        counts = {split: len(items) for split, items in datalist.items()}
        return {**summary, "source": dataset_dir, "counts": counts, "skipped": skipped, "seed": int(seed)}

    samples = {split: source[split] for split in splits}
    return write_lvit_splits(out_dir, samples, subfolders, write_sample, summarize, seed, REREPORT_KEY, overwrite)


def make_chest_xray_dataset(
    out_dir: str | os.PathLike,
    n_train: int = 200,
    n_val: int = 40,
    n_test: int = 60,
    image_size: int = 224,
    seed: int = 0,
    name_all_lesions: bool = False,
    overwrite: bool = False,
) -> dict:
    """Write a synthetic report-referred chest X-ray dataset in LViT (QaTa-COV19) layout.

    Every image has 1-4 lesions in distinct lung zones (:data:`LUNG_ZONES`, patient's left/right: the patient's left
    lung is on the image's RIGHT). The report names a random non-empty subset of them (all of them with
    ``name_all_lesions``) and the mask holds exactly the named lesions. Images and lesions do not depend on
    ``name_all_lesions``, only reports and masks do. Sample ``i`` of a split is the same for any count.

    Layout (``<S>`` in Train/Val/Test, ``<name>`` like ``train_0007``)::

        out_dir/<S>_Folder/img/<name>.png                grayscale uint8 image
        out_dir/<S>_Folder/labelcol/mask_<name>.png      mask of the named lesions, 0/255 uint8
        out_dir/<S>_Folder/labelzones/zones_<name>.png   zone map: k on the lesion in zone LUNG_ZONES[k-1], else 0
        out_dir/<S>_Folder/<S>_text.csv                  columns Image (= mask file name), Description (= report)
        out_dir/datalist.json                            keys training/validation/test, paths relative to out_dir
        out_dir/synthetic.json                           generator name, parameters and counts

    Datalist items: ``{"image", "label", "zone_map", "name", "text", "zones_present", "zones_named"}``; MONAI's
    decathlon datalist loaders make ``image`` and ``label`` absolute, ``zone_map`` stays relative to ``out_dir``.

    Args:
        out_dir: output folder; must be missing or empty unless ``overwrite`` (which replaces an earlier synthetic
            dataset, never another folder).
        n_train, n_val, n_test: number of images per split.
        image_size: side of the square images in pixels (>= 32).
        seed: random seed; the same seed gives byte-identical files.
        name_all_lesions: reports name every lesion (masks then hold all of them).
        overwrite: replace an existing synthetic dataset in ``out_dir``.

    Returns:
        summary dict: ``out_dir``, ``datalist``, ``counts`` per split, ``lesions_present``, ``lesions_named``.

    Example::

        summary = make_chest_xray_dataset("data/demo_cxr", n_train=16, n_val=4, n_test=4, image_size=128)
        records = json.load(open(summary["datalist"]))["training"]
    """
    counts = lvit_split_counts(n_train, n_val, n_test)
    image_size = check_image_size(image_size)

    def write_sample(rng, staging, split, index, _):
        image, zone_map, present, named, report = draw_referred_sample(rng, image_size, name_all_lesions)
        prefix = LVIT_SPLITS[split]
        folder, name = f"{prefix}_Folder", f"{prefix.lower()}_{index:04d}"
        paths = {
            "image": f"{folder}/img/{name}.png",
            "label": f"{folder}/labelcol/mask_{name}.png",
            "zone_map": f"{folder}/labelzones/zones_{name}.png",
        }
        write_png(image, os.path.join(staging, paths["image"]))
        write_png(mask_for_zones(zone_map, named).astype(np.uint8) * 255, os.path.join(staging, paths["label"]))
        write_png(zone_map, os.path.join(staging, paths["zone_map"]))
        return {**paths, "name": name, "text": report, "zones_present": present, "zones_named": named}

    def summarize(datalist):
        items = [item for split_items in datalist.values() for item in split_items]
        return {
            "generator": "make_chest_xray_dataset",
            "parameters": {"image_size": image_size, "seed": int(seed), "name_all_lesions": bool(name_all_lesions)},
            "counts": counts,
            "lesions_present": sum(len(item["zones_present"]) for item in items),
            "lesions_named": sum(len(item["zones_named"]) for item in items),
            "lung_zones": list(LUNG_ZONES),
        }

    samples = {split: range(n) for split, n in counts.items()}
    return write_lvit_splits(out_dir, samples, _SUBFOLDERS, write_sample, summarize, seed, overwrite=overwrite)


def make_rereported_split(
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    splits: str | Sequence[str] = "test",
    mode: str = "counterfactual",
    prompt: str = "Pulmonary infection in the lungs.",
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Copy splits of a :func:`make_chest_xray_dataset` set with new reports, in the same LViT layout.

    Modes:
        ``"counterfactual"``: each image with two or more lesions gets a report naming a different non-empty subset
            of its lesions, and the mask of exactly that subset (from the zone map); images with one lesion have no
            counterfactual and are left out. A model that ignores the report scores low here.
        ``"generic"``: every report becomes ``prompt`` and the mask stays the original one (the text-free control:
            the network still gets a text input, but it carries no information).

    Args:
        dataset_dir: folder written by :func:`make_chest_xray_dataset` (its ``datalist.json`` is read).
        out_dir: new dataset folder: ``<S>_Folder/{img,labelcol,labelzones}``, ``<S>_text.csv`` per split and
            ``datalist.json``.
        splits: datalist keys among ``"training"``, ``"validation"``, ``"test"``.
        seed: picks the counterfactual subsets and phrasings.

    Returns:
        summary dict: ``out_dir``, ``mode``, ``counts`` and ``skipped`` (single-lesion images) per split.

    Example::

        make_rereported_split("data/demo_cxr", "data/demo_cxr_counterfactual", splits="test")
    """
    if mode not in ("counterfactual", "generic"):
        raise ValueError(f"mode must be 'counterfactual' or 'generic', got {mode!r}.")

    def rereport_sample(rng, dataset_dir, staging, record):
        present, named = record["zones_present"], record["zones_named"]
        if mode == "generic":
            new_named, report = named, prompt
        else:
            subsets = other_subsets(present, named)
            if not subsets:
                return None
            new_named = subsets[int(rng.integers(len(subsets)))]
            report = compose_report(new_named, rng)
        zone_map = np.asarray(Image.open(os.path.join(dataset_dir, record["zone_map"])))
        copy_sample_files(dataset_dir, staging, record, ("image", "zone_map"))
        mask = mask_for_zones(zone_map, new_named).astype(np.uint8) * 255
        write_png(mask, os.path.join(staging, record["label"]))
        return {**record, "text": report, "zones_named": new_named}

    summary = {"generator": "make_rereported_split", "mode": mode}
    return rereport_lvit_splits(
        dataset_dir, out_dir, splits, _SUBFOLDERS, rereport_sample, summary, "make_chest_xray_dataset", seed, overwrite
    )

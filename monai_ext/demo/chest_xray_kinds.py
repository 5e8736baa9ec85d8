"""Demo task v2: synthetic chest X-rays with lesions of three kinds that look different, reports naming a subset of
them by clinical term and lung zone, and a caption corpus (plain visual words only) for pretraining a tiny CLIP.

This is a controlled test of the text-guided mechanism (``docs/benchmarks.md``, "Demo task v2"), not a model of real
radiographs. Each premise of TGC-Net is built in:

* kinds: ``consolidation`` (dense, uniform white patch hiding the lung lines), ``ground-glass opacity`` (faint, hazy
  patch through which the lung lines stay visible) and ``nodule`` (small, round, bright, sharp spot, a few pixels
  across: far below a 16-pixel ViT patch);
* most images (70%) hold a nodule beside a larger lesion in the same lung zone, so that the kind named in the
  report, not only the zone, decides the mask;
* reports use the clinical terms (several sentence frames; held-out frames and held-out terms for the unseen-phrasing
  tests); the pretraining captions of :func:`make_caption_corpus` describe the same images in plain visual words and
  never use a clinical term, so only the knowledge file (``bundles/tgcnet/configs/medical_knowledge_v2.json``, which
  maps each term to those words) connects a report to what the pretrained encoder knows.

Lesion ``(kind, zone)`` pairs are unique within an image; the kind map and the zone map written per image give every
lesion, so the mask of any subset of findings (counterfactual reports) and the oracle's input (the lung zones each
named kind lies in) can be derived. Laterality is the patient's, as in :mod:`monai_ext.demo.chest_xray`: the patient's
left lung is on the image's right.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import numpy as np
from monai_ext.io import image_stem
from PIL import Image
from scipy import ndimage

from .cardiac import CARDIAC_DOMAINS, render_cardiac_volume
from .chest_xray import (
    LUNG_ZONES,
    LVIT_SPLITS,
    copy_sample_files,
    lung_zone_partition,
    lvit_split_counts,
    other_subsets,
    parse_report_zones,
    posterior_ribs,
    rereport_lvit_splits,
    write_lvit_splits,
)
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
from .fundus import FUNDUS_DOMAINS, render_fundus

__all__ = [
    "LESION_KINDS",
    "REPORT_PHRASINGS",
    "CORPUS_SOURCES",
    "CAPTION_APPEARANCE",
    "compose_findings_report",
    "parse_report_findings",
    "mask_for_findings",
    "oracle_channels",
    "render_chest_xray_kinds",
    "make_chest_xray_kinds_dataset",
    "make_kinds_rereported_split",
    "make_caption_corpus",
]

# Kind k (1-based) of a kind map is LESION_KINDS[k - 1]; the names are the clinical terms of the reports and of the
# knowledge file. Zone z (1-based) of a zone map is LUNG_ZONES[z - 1], as in chest_xray.
LESION_KINDS = ("consolidation", "ground-glass opacity", "nodule")
_EXTENDED_KINDS = ("consolidation", "ground-glass opacity")

# Report wording. "training" is what training, validation and the factual test use; the two held-out sets change one
# thing each: the sentence frames and zone wording, or the words naming the kinds (each a knowledge-file alias).
_TRAINING_FRAMES = ("{Findings}.", "Findings: {findings}.", "The radiograph shows {findings}.", "There is {findings}.")
_TRAINING_ZONES = ("{level} {side} lung", "{side} {level} lung")
_TRAINING_TERMS = {
    "consolidation": ("consolidation", "an area of consolidation"),
    "ground-glass opacity": ("ground-glass opacity", "a patch of ground-glass opacity"),
    "nodule": ("a nodule", "a pulmonary nodule"),
}
REPORT_PHRASINGS = {
    "training": {"frames": _TRAINING_FRAMES, "zones": _TRAINING_ZONES, "terms": _TRAINING_TERMS, "joiner": "and"},
    "held_out_frames": {
        "frames": ("Impression: {findings} noted.", "Frontal chest film with {findings}."),
        "zones": ("{level} zone of the {side} lung",),
        "terms": _TRAINING_TERMS,
        "joiner": ";",
    },
    "held_out_terms": {
        "frames": _TRAINING_FRAMES,
        "zones": _TRAINING_ZONES,
        "terms": {
            "consolidation": ("consolidative change",),
            "ground-glass opacity": ("GGO",),
            "nodule": ("a nodular focus",),
        },
        "joiner": "and",
    },
}
# Names that identify each kind in a clause (every phrasing's term contains one of them).
_KIND_PATTERNS = {
    "consolidation": re.compile(r"\b(?:consolidation|consolidative)\b", re.IGNORECASE),
    "ground-glass opacity": re.compile(r"\b(?:ground[\s-]+glass\s+opacity|ggo)\b", re.IGNORECASE),
    "nodule": re.compile(r"\b(?:nodule|nodular)\b", re.IGNORECASE),
}
_CLAUSE_SPLIT = re.compile(r"[,;]|\band\b", re.IGNORECASE)

# Pretraining captions: plain visual words only. The knowledge file's "visual" descriptions use the same words.
CAPTION_APPEARANCE = {
    "consolidation": (
        "a dense, uniform white patch",
        "a dense white patch that hides the lung lines",
        "a solid, uniform white area",
    ),
    "ground-glass opacity": (
        "a faint, hazy grey patch",
        "a faint hazy patch with the lung lines still visible through it",
        "a pale grey haze",
    ),
    "nodule": ("a small, round, bright spot", "a small round spot with a sharp edge", "a tiny bright dot"),
}
_CHEST_CAPTION_FRAMES = ("a chest x-ray with {items}.", "chest x-ray showing {items}.", "frontal chest image: {items}.")
_CHEST_CLEAR_CAPTIONS = (
    "a chest x-ray with clear, dark lungs.",
    "chest x-ray showing clear lungs and no bright areas.",
    "frontal chest image: both lungs clear and dark.",
)
_FUNDUS_VIEW_CAPTIONS = (
    "a fundus photograph with the optic disc on the {side} side of the image and a {cup} optic cup inside it.",
    "photograph of the retina: a round optic disc at the {side}, holding a {cup} optic cup, with blood vessels "
    "branching out from the disc.",
    "retina image, optic disc on the {side}, {cup} optic cup in its centre.",
)
_FUNDUS_DISC_CAPTIONS = (
    "a close view of the optic disc with a {cup} optic cup in its centre.",
    "close-up of the round optic disc; the optic cup inside it is {cup}.",
    "zoomed view: the optic disc fills the middle, with a {cup} optic cup.",
)
_FUNDUS_RETINA_CAPTIONS = (
    "a close view of the retina with blood vessels and no optic disc.",
    "close-up of retinal tissue and vessels, away from the optic disc.",
    "zoomed view of the retina outside the optic disc.",
)
_CARDIAC_VIEW_CAPTIONS = (
    "a short-axis cardiac slice {position}: the round left ventricle cavity is ringed by the myocardium, {rv}.",
    "short-axis heart image {position}, a ring of myocardium around the left ventricle cavity, {rv}.",
    "cardiac slice {position} showing the left ventricle cavity inside the myocardial ring, {rv}.",
)
_CARDIAC_HEART_CAPTIONS = (
    "a close view of the heart {position}: the left ventricle cavity inside the ring of myocardium, {rv}.",
    "close-up of the left ventricle and its myocardium {position}, {rv}.",
    "zoomed view of the heart chambers {position}, {rv}.",
)
_CARDIAC_POSITIONS = ("near the base", "at mid-ventricle", "at mid-ventricle", "near the apex")  # slices 0..3
_CARDIAC_RV = {True: "with the crescent-shaped right ventricle beside it", False: "and no right ventricle in view"}

# Pretraining sources: the v2 chest X-rays, and the fundus / cardiac demos' SOURCE domains only (the domain-
# generalisation targets' appearance never enters the corpus).
CORPUS_SOURCES = {"chest": None, "fundus": "domain_a", "cardiac": "bssfp"}
# First element of every corpus sample's random key. Evaluation images are keyed (split or domain, index), two
# elements; corpus images (CORPUS_KEY, source, part, index), four: their random streams differ for every seed.
CORPUS_KEY = 7919
_CORPUS_PARTS = ("training", "held_out")


def _check_findings(findings: Sequence[Mapping]) -> list[dict]:
    """Findings as ``[{"kind", "zone"}]``, validated and sorted (zone order, then kind order)."""
    if isinstance(findings, (str, Mapping)):
        raise ValueError(f"findings must be a list of {{'kind', 'zone'}} mappings, got {findings!r}.")
    checked = []
    for finding in findings:
        kind, zone = finding.get("kind"), finding.get("zone")
        if kind not in LESION_KINDS:
            raise ValueError(f"Unknown lesion kind {kind!r}; valid kinds are {list(LESION_KINDS)}.")
        if zone not in LUNG_ZONES:
            raise ValueError(f"Unknown lung zone {zone!r}; valid zones are {list(LUNG_ZONES)}.")
        checked.append({"kind": kind, "zone": zone})
    keys = [(LUNG_ZONES.index(f["zone"]), LESION_KINDS.index(f["kind"])) for f in checked]
    if len(set(keys)) != len(keys):
        raise ValueError(f"Findings must be distinct (kind, zone) pairs, got {list(findings)}.")
    return [checked[i] for i in sorted(range(len(keys)), key=keys.__getitem__)]


def _pick(options: Sequence[str], rng: np.random.Generator | None) -> str:
    return options[0] if rng is None else options[int(rng.integers(len(options)))]


def _join(phrases: list[str], joiner: str) -> str:
    if joiner == ";":
        return "; ".join(phrases)
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def compose_findings_report(
    findings: Sequence[Mapping], rng: np.random.Generator | None = None, phrasing: str = "training"
) -> str:
    """Report naming each finding by its clinical term and lung zone.

    Args:
        findings: one or more distinct ``{"kind": LESION_KINDS[i], "zone": LUNG_ZONES[j]}`` (named in zone order).
        rng: picks the frame and the wording of each finding; ``None`` gives the first of each.
        phrasing: a key of :data:`REPORT_PHRASINGS`: ``"training"``, ``"held_out_frames"`` or ``"held_out_terms"``.

    Example::

        compose_findings_report([{"kind": "nodule", "zone": "upper right"}, {"kind": "consolidation", "zone": "lower left"}])
        # 'Consolidation in the lower left lung and a nodule in the upper right lung.'
    """
    if phrasing not in REPORT_PHRASINGS:
        raise ValueError(f"phrasing must be one of {list(REPORT_PHRASINGS)}, got {phrasing!r}.")
    findings = _check_findings(findings)
    if not findings:
        raise ValueError("A report must name at least one finding.")
    words = REPORT_PHRASINGS[phrasing]
    frame = _pick(words["frames"], rng)
    zone_words = _pick(words["zones"], rng)
    phrases = []
    for finding in findings:
        level, side = finding["zone"].split()
        term = _pick(words["terms"][finding["kind"]], rng)
        phrases.append(f"{term} in the {zone_words.format(level=level, side=side)}")
    body = _join(phrases, words["joiner"])
    return frame.format(findings=body, Findings=body[0].upper() + body[1:])


def parse_report_findings(text: str) -> list[dict]:
    """Findings named in a report (inverse of :func:`compose_findings_report` for every phrasing).

    The report is split into clauses at commas, semicolons and "and"; a clause naming a kind must name exactly one
    lung zone (either word order, or "upper zone of the left lung"), and the other way round.

    Raises:
        ValueError: a clause names a kind without a zone, a zone without a kind, or several of either.
    """
    if not isinstance(text, str):
        raise ValueError(f"Report must be a string, got {type(text).__name__}.")
    findings = []
    for clause in _CLAUSE_SPLIT.split(text):
        kinds = [kind for kind, pattern in _KIND_PATTERNS.items() if pattern.search(clause)]
        zones = parse_report_zones(clause)
        if not kinds and not zones:
            continue
        if len(kinds) != 1 or len(zones) != 1:
            raise ValueError(f"Clause {clause.strip()!r} of {text!r} must name one lesion kind and one lung zone.")
        findings.append({"kind": kinds[0], "zone": zones[0]})
    return _check_findings(findings)


def mask_for_findings(kind_map: np.ndarray, zone_map: np.ndarray, findings: Sequence[Mapping]) -> np.ndarray:
    """Binary mask (bool) of the lesions named by ``findings``.

    Args:
        kind_map: integer array, ``k`` on a lesion of kind ``LESION_KINDS[k - 1]``, 0 elsewhere.
        zone_map: integer array of the same shape, ``z`` on a lesion lying in zone ``LUNG_ZONES[z - 1]``.
        findings: ``[{"kind", "zone"}]``; findings without a lesion add nothing.
    """
    kind_map, zone_map = np.asarray(kind_map), np.asarray(zone_map)
    for name, array in (("kind_map", kind_map), ("zone_map", zone_map)):
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{name} must hold integer indices, got dtype {array.dtype}.")
    if kind_map.shape != zone_map.shape:
        raise ValueError(f"kind_map {kind_map.shape} and zone_map {zone_map.shape} differ in shape.")
    mask = np.zeros(kind_map.shape, bool)
    for finding in _check_findings(findings):
        kind, zone = LESION_KINDS.index(finding["kind"]) + 1, LUNG_ZONES.index(finding["zone"]) + 1
        mask |= (kind_map == kind) & (zone_map == zone)
    return mask


def oracle_channels(lung_zone_map: np.ndarray, findings: Sequence[Mapping]) -> np.ndarray:
    """The report's content as pictures: uint8 ``(H, W, 3)``, channel ``k`` 255 on the lung zones where the report
    names a lesion of kind ``LESION_KINDS[k]``.

    The oracle baseline reads these channels with the image: it knows exactly what the report says (which kind where),
    and must still find the lesion and its border in the image. ``lung_zone_map`` is the partition of the lung fields
    (``lungzones/`` files: ``z`` on zone ``LUNG_ZONES[z - 1]``, 0 outside the lungs).
    """
    lung_zone_map = np.asarray(lung_zone_map)
    channels = np.zeros((*lung_zone_map.shape, len(LESION_KINDS)), np.uint8)
    for finding in _check_findings(findings):
        zone = LUNG_ZONES.index(finding["zone"]) + 1
        channels[..., LESION_KINDS.index(finding["kind"])][lung_zone_map == zone] = 255
    return channels


def _vessel_lines(rng: np.random.Generator, size: int, hila: list[tuple[float, float, float]]) -> np.ndarray:
    """Lung lines (vessels): about ten slightly curved rays fanning out laterally from each hilum, thinning outwards.

    ``hila`` holds ``(y, x, outward)`` per lung, ``outward`` = -1 towards the image's left, +1 towards its right.
    """
    canvas = np.zeros((size, size), np.float32)
    step = 1.0 / size  # half a pixel in normalised units
    for cy, cx, outward in hila:
        for angle in np.linspace(-1.25, 1.25, 10) + rng.uniform(-0.12, 0.12, 10):
            length = rng.uniform(0.45, 0.8)
            t = np.arange(0.0, length, step)
            heading = angle + rng.uniform(-0.8, 0.8) * t
            y = cy + np.cumsum(np.sin(heading)) * step
            x = cx + outward * np.cumsum(np.cos(heading)) * step
            rows = np.floor((y + 1.0) / 2.0 * size).astype(int)
            cols = np.floor((x + 1.0) / 2.0 * size).astype(int)
            inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
            np.maximum.at(canvas, (rows[inside], cols[inside]), (1.0 - t[inside] / length) ** 0.5)
    sigma = max(0.5, 0.7 * size / 128)
    return np.clip(ndimage.gaussian_filter(canvas, sigma) * np.sqrt(2 * np.pi) * sigma, 0.0, 1.0)


def _chest_anatomy(rng: np.random.Generator, size: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Soft layers in [0, 1] of one frontal chest X-ray (body, heart, mediastinum, lung fields, ribs, and the lung
    lines' density) and the bool lung masks per patient side. The lungs are wider than chest_xray's, leaving room for
    two lesions in one zone, and carry visible vessel lines (ground glass shows them, consolidation hides them)."""
    yy, xx = normalized_grid(size)
    edge = 4.0 / size
    body = soft_inside(
        ellipse_radius(yy, xx, 0.05 + rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03), rng.uniform(0.98, 1.08), 0.9),
        3 * edge,
    )
    heart_radius = ellipse_radius(
        yy, xx, rng.uniform(0.2, 0.3), rng.uniform(0.08, 0.14), rng.uniform(0.22, 0.27), rng.uniform(0.24, 0.3)
    )
    heart = soft_inside(heart_radius, 6 * edge)
    half_width = rng.uniform(0.08, 0.1)
    mediastinum = np.clip((half_width - np.abs(xx)) / (6 * edge) + 0.5, 0, 1) * (yy > -0.85)
    lung_soft = np.zeros_like(yy)
    lungs, hila = {}, []
    # Patient's right lung on the image's left (negative x), patient's left lung on the image's right.
    for side, sign in (("right", -1.0), ("left", 1.0)):
        radius = ellipse_radius(
            yy,
            xx,
            rng.uniform(-0.1, -0.03),
            sign * rng.uniform(0.4, 0.44),
            rng.uniform(0.6, 0.68),
            rng.uniform(0.29, 0.33),
            sign * rng.uniform(0.0, 0.1),
        )
        lung_soft = np.maximum(lung_soft, soft_inside(radius, 4 * edge))
        lungs[side] = (radius < 1.0) & (heart_radius >= 1.0) & (np.abs(xx) >= half_width)
        hila.append((rng.uniform(-0.1, 0.05), sign * (half_width + 0.04), sign))
    lung_soft *= (1.0 - heart) * (1.0 - mediastinum)
    ribs = posterior_ribs(rng, yy, xx)
    lines = lung_soft * (
        0.02 * smooth_noise(rng, size, cells=max(8, size // 8)) + 0.12 * _vessel_lines(rng, size, hila)
    )
    layers = {"body": body, "heart": heart, "mediastinum": mediastinum, "lung_soft": lung_soft, "ribs": ribs}
    return {**layers, "lines": lines}, lungs


def _room(region: np.ndarray) -> np.ndarray:
    """Distance (pixels) from each pixel of ``region`` to the nearest pixel outside it."""
    return ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]


def _nodule(rng: np.random.Generator, region: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray | None:
    """A small round spot (bool), 5-9 pixels across at 128 px, lying entirely inside ``region``; None if no room."""
    size = region.shape[0]
    radius = rng.uniform(2.5, 4.5) * size / 128  # pixels
    room = _room(region)
    candidates = np.argwhere(room >= radius + 1.5)
    if len(candidates) == 0:
        return None
    cy, cx = candidates[int(rng.integers(len(candidates)))]
    r = radius * 2.0 / size
    spot = ellipse_radius(yy, xx, yy[cy, cx], xx[cy, cx], r * rng.uniform(0.9, 1.1), r, rng.uniform(0, np.pi)) < 1.0
    return spot & region


def _patch(
    rng: np.random.Generator, region: np.ndarray, yy: np.ndarray, xx: np.ndarray, roughness: np.ndarray
) -> np.ndarray | None:
    """An irregular blob (bool) inside ``region``: an ellipse sized to the room around a well-inside centre, its border
    perturbed by smooth noise, the part connected to the centre kept; None if ``region`` is empty."""
    size = region.shape[0]
    room = _room(region)
    if room.max() < 1.0:
        return None
    candidates = np.argwhere(room >= 0.6 * room.max())
    cy, cx = candidates[int(rng.integers(len(candidates)))]
    reach = room[cy, cx] * 2.0 / size
    radius = ellipse_radius(
        yy, xx, yy[cy, cx], xx[cy, cx], reach * rng.uniform(0.9, 1.4), reach * rng.uniform(0.9, 1.4), rng.uniform(0, 3)
    )
    blob = (1.0 - radius + 0.25 * (roughness - roughness[cy, cx]) > 0) & region
    components, _ = ndimage.label(blob)
    return components == components[cy, cx]


def _plan_lesions(rng: np.random.Generator, n_lesions: int, available: list[int]) -> list[tuple[str, int]]:
    """``(kind, zone)`` of each lesion: distinct zones, except that with probability 0.7 one zone holds a nodule beside
    a consolidation or ground-glass opacity (so that the kind decides which of the two a report means)."""
    shared = n_lesions >= 2 and rng.random() < 0.7
    zones = rng.choice(available, size=min(n_lesions - int(shared), len(available)), replace=False).tolist()
    plan = [(LESION_KINDS[int(rng.integers(len(LESION_KINDS)))], int(zone)) for zone in zones]
    if shared:
        plan[0] = (_EXTENDED_KINDS[int(rng.integers(2))], plan[0][1])
        plan.append(("nodule", plan[0][1]))
    return plan


def render_chest_xray_kinds(
    rng: np.random.Generator, image_size: int, n_lesions: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """Draw one frontal chest X-ray with ``n_lesions`` lesions of the kinds in :data:`LESION_KINDS`.

    Returns:
        ``(image, kind_map, zone_map, lung_zone_map, findings)``: uint8 ``(H, W)`` image; uint8 kind map (``k`` on a
        lesion of kind ``LESION_KINDS[k - 1]``) and zone map (``z`` on a lesion in zone ``LUNG_ZONES[z - 1]``), 0
        elsewhere; uint8 partition of the lung fields into the six zones; the drawn lesions as sorted
        ``[{"kind", "zone"}]``. A lesion that finds no room is left out, so ``findings`` may be shorter than asked.
    """
    if not 0 <= n_lesions <= len(LUNG_ZONES):
        raise ValueError(f"n_lesions must be in 0..{len(LUNG_ZONES)}, got {n_lesions}.")
    size = image_size
    scale = size / 128
    yy, xx = normalized_grid(size)
    anatomy, lungs = _chest_anatomy(rng, size)
    lung_zone_map = lung_zone_partition(lungs)
    available = [z for z in range(1, len(LUNG_ZONES) + 1) if (lung_zone_map == z).any()]
    plan = _plan_lesions(rng, n_lesions, available) if n_lesions else []
    roughness = smooth_noise(rng, size, cells=10)
    kind_map = np.zeros((size, size), np.uint8)
    zone_map = np.zeros((size, size), np.uint8)
    drawn = []
    # Nodules first: a larger lesion sharing the zone keeps a margin of a few pixels around them.
    for kind, zone in sorted(plan, key=lambda item: item[0] != "nodule"):
        region = (lung_zone_map == zone) & ~ndimage.binary_dilation(kind_map > 0, iterations=max(2, size // 40))
        lesion = _nodule(rng, region, yy, xx) if kind == "nodule" else _patch(rng, region, yy, xx, roughness)
        if lesion is None or not lesion.any():
            continue
        kind_map[lesion] = LESION_KINDS.index(kind) + 1
        zone_map[lesion] = zone
        drawn.append((kind, lesion.astype(np.float32)))

    # Aerated lung with its lines; dense lesions replace it (the lines vanish), ground glass adds a haze over it.
    lung = 0.24 + anatomy["lines"]
    for kind, lesion in drawn:
        if kind == "ground-glass opacity":
            texture = 0.75 + 0.25 * np.clip(smooth_noise(rng, size, cells=16), -1, 1)
            lung = lung + ndimage.gaussian_filter(lesion * texture, 2.0 * scale) * rng.uniform(0.24, 0.3)
        else:
            cover = ndimage.gaussian_filter(lesion, (0.8 if kind == "consolidation" else 0.5) * scale)
            level = rng.uniform(0.62, 0.72) if kind == "consolidation" else rng.uniform(0.66, 0.78)
            lung = lung * (1.0 - cover) + cover * level * (1.0 + 0.02 * smooth_noise(rng, size, cells=12))
    image = 0.04 + anatomy["body"] * (
        0.5
        + (lung - 0.5) * anatomy["lung_soft"]
        + 0.12 * anatomy["heart"]
        + 0.1 * anatomy["mediastinum"]
        + 0.1 * anatomy["ribs"]
    )
    image = np.clip(image, 0.0, 1.0) ** rng.uniform(0.85, 1.2)
    image = (image - 0.5) * rng.uniform(0.9, 1.1) + 0.5 + rng.uniform(-0.04, 0.04)
    image = ndimage.gaussian_filter(image, sigma=rng.uniform(0.4, 0.7) * scale)
    image = image + rng.normal(0.0, rng.uniform(0.01, 0.025), image.shape)
    image = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    findings = [
        {"kind": LESION_KINDS[kind_map[lesion > 0][0] - 1], "zone": LUNG_ZONES[zone_map[lesion > 0][0] - 1]}
        for _, lesion in drawn
    ]
    return image, kind_map, zone_map, lung_zone_map, _check_findings(findings)


def _sample_paths(folder: str, name: str) -> dict[str, str]:
    return {
        "image": f"{folder}/img/{name}.png",
        "label": f"{folder}/labelcol/mask_{name}.png",
        "kind_map": f"{folder}/labelkinds/kinds_{name}.png",
        "zone_map": f"{folder}/labelzones/zones_{name}.png",
        "lung_zones": f"{folder}/lungzones/lungzones_{name}.png",
        "oracle": f"{folder}/labeloracle/oracle_{name}.png",
    }


_SUBFOLDERS = ("img", "labelcol", "labelkinds", "labelzones", "lungzones", "labeloracle")


def _kind_critical(present: list[dict], named: list[dict]) -> bool:
    """Whether a named finding shares its zone with an unnamed lesion (the zone alone does not give the mask)."""
    named_keys = {(f["kind"], f["zone"]) for f in named}
    unnamed_zones = {f["zone"] for f in present if (f["kind"], f["zone"]) not in named_keys}
    return any(f["zone"] in unnamed_zones for f in named)


def make_chest_xray_kinds_dataset(
    out_dir: str | os.PathLike,
    n_train: int = 160,
    n_val: int = 32,
    n_test: int = 48,
    image_size: int = 128,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Write the v2 demo set (lesion kinds, reports by clinical term and zone) in LViT (QaTa-COV19) layout.

    Every image has 2-4 lesions (:func:`render_chest_xray_kinds`); the report names a random non-empty subset of them
    in the "training" phrasing of :data:`REPORT_PHRASINGS` and the mask holds exactly the named lesions. Sample ``i``
    of a split is the same for any count.

    Layout (``<S>`` in Train/Val/Test, ``<name>`` like ``train_0007``)::

        out_dir/<S>_Folder/img/<name>.png                    grayscale uint8 image
        out_dir/<S>_Folder/labelcol/mask_<name>.png          mask of the named lesions, 0/255
        out_dir/<S>_Folder/labelkinds/kinds_<name>.png       k on a lesion of kind LESION_KINDS[k-1], else 0
        out_dir/<S>_Folder/labelzones/zones_<name>.png       z on a lesion in zone LUNG_ZONES[z-1], else 0
        out_dir/<S>_Folder/lungzones/lungzones_<name>.png    the six lung zones (z on zone LUNG_ZONES[z-1])
        out_dir/<S>_Folder/labeloracle/oracle_<name>.png     RGB oracle input (:func:`oracle_channels`)
        out_dir/<S>_Folder/<S>_text.csv                      columns Image (= mask file name), Description (= report)
        out_dir/datalist.json                                keys training/validation/test, paths relative to out_dir
        out_dir/synthetic.json                               generator name, parameters and counts

    Datalist items: the paths above (keys ``image``, ``label``, ``kind_map``, ``zone_map``, ``lung_zones``,
    ``oracle``), ``name``, ``text``, ``findings_present``, ``findings_named`` (lists of ``{"kind", "zone"}``) and
    ``kind_critical`` (a named lesion shares its zone with an unnamed one).

    Args:
        out_dir: output folder; must be missing or empty unless ``overwrite`` (replaces an earlier synthetic dataset).
        n_train, n_val, n_test: number of images per split.
        image_size: side of the square images in pixels (>= 64: nodules are a few pixels across at 128).
        seed: random seed; the same seed gives byte-identical files.
        overwrite: replace an existing synthetic dataset in ``out_dir``.

    Returns:
        summary dict: ``out_dir``, ``datalist``, ``counts``, ``lesions_present`` and ``lesions_named`` per kind,
        ``kind_critical`` per split.
    """
    counts = lvit_split_counts(n_train, n_val, n_test)
    image_size = check_image_size(image_size, minimum=64)

    def write_sample(rng, staging, split, index, _):
        image, kind_map, zone_map, lung_zones, present = render_chest_xray_kinds(
            rng, image_size, n_lesions=int(rng.integers(2, 5))
        )
        chosen = rng.choice(len(present), size=int(rng.integers(1, len(present) + 1)), replace=False)
        named = _check_findings([present[j] for j in chosen])
        report = compose_findings_report(named, rng)
        prefix = LVIT_SPLITS[split]
        name = f"{prefix.lower()}_{index:04d}"
        paths = _sample_paths(f"{prefix}_Folder", name)
        mask = mask_for_findings(kind_map, zone_map, named).astype(np.uint8) * 255
        for array, path_key in (
            (image, "image"),
            (mask, "label"),
            (kind_map, "kind_map"),
            (zone_map, "zone_map"),
            (lung_zones, "lung_zones"),
            (oracle_channels(lung_zones, named), "oracle"),
        ):
            write_png(array, os.path.join(staging, paths[path_key]))
        return {
            **paths,
            "name": name,
            "text": report,
            "findings_present": present,
            "findings_named": named,
            "kind_critical": _kind_critical(present, named),
        }

    def summarize(datalist):
        items = [item for split_items in datalist.values() for item in split_items]
        present_per_kind = dict.fromkeys(LESION_KINDS, 0)
        named_per_kind = dict.fromkeys(LESION_KINDS, 0)
        for item in items:
            for finding in item["findings_present"]:
                present_per_kind[finding["kind"]] += 1
            for finding in item["findings_named"]:
                named_per_kind[finding["kind"]] += 1
        return {
            "generator": "make_chest_xray_kinds_dataset",
            "parameters": {"image_size": image_size, "seed": int(seed)},
            "counts": counts,
            "lesions_present": present_per_kind,
            "lesions_named": named_per_kind,
            "kind_critical": {split: sum(item["kind_critical"] for item in items) for split, items in datalist.items()},
            "lesion_kinds": list(LESION_KINDS),
            "lung_zones": list(LUNG_ZONES),
        }

    samples = {split: range(n) for split, n in counts.items()}
    return write_lvit_splits(out_dir, samples, _SUBFOLDERS, write_sample, summarize, seed, overwrite=overwrite)


def with_oracle_inputs(records: Sequence[Mapping]) -> list[dict]:
    """Records of a v2 demo split (e.g. from ``monai_ext.data.load_lvit_split``) with the path of each image's oracle
    input added under ``"oracle"`` (``<split>_Folder/labeloracle/oracle_<name>.png`` beside ``img/<name>.png``).

    Used by the oracle baseline (``configs/demo_oracle.json``), which reads these channels with the image.

    Raises:
        FileNotFoundError: an oracle input is missing (the records are not of a :func:`make_chest_xray_kinds_dataset`
            set); the message names the first missing file and how many are missing.
    """
    out, missing = [], []
    for record in records:
        image = os.fspath(record["image"])
        split_folder = os.path.dirname(os.path.dirname(image))
        oracle = os.path.join(split_folder, "labeloracle", f"oracle_{image_stem(image)}.png")
        if not os.path.isfile(oracle):
            missing.append(oracle)
        out.append({**record, "oracle": oracle})
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(out)} oracle inputs are missing, e.g. '{missing[0]}': the oracle baseline needs a "
            "demo task v2 dataset (monai_ext.demo.make_chest_xray_kinds_dataset)."
        )
    return out


def make_kinds_rereported_split(
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    splits: str | Sequence[str] = "test",
    mode: str = "counterfactual",
    phrasing: str = "training",
    prompt: str = "Findings in the lungs.",
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Copy splits of a :func:`make_chest_xray_kinds_dataset` set with new reports (same layout).

    Modes:
        ``"counterfactual"``: each image gets a report naming a different non-empty subset of its lesions (phrased
            with ``phrasing``), and the mask and oracle input of exactly that subset.
        ``"rephrased"``: the same findings as the original report, phrased with ``phrasing`` (the unseen-phrasing
            test with ``"held_out_frames"`` or ``"held_out_terms"``); masks unchanged.
        ``"generic"``: every report becomes ``prompt``, masks unchanged (the text-free control).

    Returns:
        summary dict: ``out_dir``, ``mode``, ``phrasing``, ``counts`` and ``skipped`` (images with no other subset).
    """
    if mode not in ("counterfactual", "rephrased", "generic"):
        raise ValueError(f"mode must be 'counterfactual', 'rephrased' or 'generic', got {mode!r}.")
    if phrasing not in REPORT_PHRASINGS:
        raise ValueError(f"phrasing must be one of {list(REPORT_PHRASINGS)}, got {phrasing!r}.")

    def rereport_sample(rng, dataset_dir, staging, record):
        present, named = record["findings_present"], record["findings_named"]
        if mode == "counterfactual":
            subsets = other_subsets(present, named)
            if not subsets:
                return None
            named = subsets[int(rng.integers(len(subsets)))]
        report = prompt if mode == "generic" else compose_findings_report(named, rng, phrasing)
        copy_sample_files(dataset_dir, staging, record, ("image", "kind_map", "zone_map", "lung_zones"))
        if mode == "counterfactual":
            kind_map = np.asarray(Image.open(os.path.join(dataset_dir, record["kind_map"])))
            zone_map = np.asarray(Image.open(os.path.join(dataset_dir, record["zone_map"])))
            lung_zones = np.asarray(Image.open(os.path.join(dataset_dir, record["lung_zones"])))
            mask = mask_for_findings(kind_map, zone_map, named).astype(np.uint8) * 255
            write_png(mask, os.path.join(staging, record["label"]))
            write_png(oracle_channels(lung_zones, named), os.path.join(staging, record["oracle"]))
        else:
            copy_sample_files(dataset_dir, staging, record, ("label", "oracle"))
        return {**record, "text": report, "findings_named": named, "kind_critical": _kind_critical(present, named)}

    summary = {"generator": "make_kinds_rereported_split", "mode": mode, "phrasing": phrasing}
    return rereport_lvit_splits(
        dataset_dir,
        out_dir,
        splits,
        _SUBFOLDERS,
        rereport_sample,
        summary,
        "make_chest_xray_kinds_dataset",
        seed,
        overwrite,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Caption corpus for contrastive pretraining
# ---------------------------------------------------------------------------------------------------------------------


def _chest_captions(rng: np.random.Generator, findings: list[dict], count: int) -> list[str]:
    captions = []
    for _ in range(count):
        if not findings:
            captions.append(_pick(_CHEST_CLEAR_CAPTIONS, rng))
            continue
        zone_words = _pick(_TRAINING_ZONES, rng)
        items = []
        for finding in findings:
            level, side = finding["zone"].split()
            looks = _pick(CAPTION_APPEARANCE[finding["kind"]], rng)
            items.append(f"{looks} in the {zone_words.format(level=level, side=side)}")
        captions.append(_pick(_CHEST_CAPTION_FRAMES, rng).format(items=_join(items, "and")))
    return captions


def _crop(image: np.ndarray, centre: tuple[float, float], window: int) -> np.ndarray:
    """``window x window`` crop around ``centre`` (pixels), shifted to stay inside the image."""
    top = int(np.clip(round(centre[0] - window / 2), 0, image.shape[0] - window))
    left = int(np.clip(round(centre[1] - window / 2), 0, image.shape[1] - window))
    return image[top : top + window, left : left + window]


def _background_centre(
    rng: np.random.Generator, label: np.ndarray, inside: np.ndarray, window: int
) -> tuple[int, int] | None:
    """Centre of a ``window`` crop holding no ``label`` pixel and mostly ``inside`` pixels; None when none is found."""
    candidates = np.argwhere(inside)
    for _ in range(50):
        cy, cx = candidates[int(rng.integers(len(candidates)))]
        if not _crop(label, (cy, cx), window).any() and _crop(inside, (cy, cx), window).mean() > 0.7:
            return int(cy), int(cx)
    return None


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def _fundus_pair(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[str], str, dict]:
    """One fundus image of the source camera (whole view, or a close view of the disc or of the retina at twice the
    resolution), its captions, its content key and no further corpus fields."""
    view = ("view", "disc", "retina")[int(rng.choice(3, p=[0.6, 0.2, 0.2]))]
    render_size = size if view == "view" else 2 * size
    image, label, geometry = render_fundus(rng, render_size, FUNDUS_DOMAINS[CORPUS_SOURCES["fundus"]])
    ratio = geometry["cup_disc_ratio"]
    cup = "small" if ratio < 0.43 else ("medium-sized" if ratio < 0.57 else "large")
    side = geometry["eye"].split()[1]
    if view == "retina":
        yy, xx = normalized_grid(render_size)
        centre = _background_centre(rng, label > 0, np.sqrt(yy**2 + xx**2) < 0.85, size)
        if centre is None:
            view = "disc"
        else:
            image = _crop(image, centre, size)
            return image, [_pick(_FUNDUS_RETINA_CAPTIONS, rng) for _ in range(3)], "fundus:retina", {}
    if view == "disc":
        image = _crop(image, tuple(np.argwhere(label > 0).mean(axis=0)), size)
        captions = [_pick(_FUNDUS_DISC_CAPTIONS, rng).format(cup=cup) for _ in range(3)]
        return image, captions, f"fundus:disc:{cup}", {}
    captions = [_pick(_FUNDUS_VIEW_CAPTIONS, rng).format(side=side, cup=cup) for _ in range(3)]
    return image, captions, f"fundus:view:{side}:{cup}", {}


def _percentile_uint8(image: np.ndarray) -> np.ndarray:
    """Scale the 1st-99th percentile range to 0-255, as the VLSA-Net cardiac config scales slices."""
    low, high = np.percentile(image, (1, 99))
    return np.round(np.clip((image - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)


def _cardiac_pair(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[str], str, dict]:
    """One short-axis slice of the source sequence (whole view, or a close view of the heart at twice the
    resolution), its captions, its content key and no further corpus fields."""
    close = rng.random() < 0.3
    volume, labels = render_cardiac_volume(
        rng, 2 * size if close else size, 4, CARDIAC_DOMAINS[CORPUS_SOURCES["cardiac"]]
    )
    index = int(rng.integers(4))
    image, label = _percentile_uint8(volume[..., index].astype(np.float32)), labels[..., index]
    if close:
        image = _crop(image, tuple(np.argwhere(label > 0).mean(axis=0)), size)
    position = _CARDIAC_POSITIONS[index]
    rv_visible = bool((label == 3).any())
    frames = _CARDIAC_HEART_CAPTIONS if close else _CARDIAC_VIEW_CAPTIONS
    captions = [_pick(frames, rng).format(position=position, rv=_CARDIAC_RV[rv_visible]) for _ in range(3)]
    return image, captions, f"cardiac:{'heart' if close else 'view'}:{position}:{'rv' if rv_visible else 'no-rv'}", {}


def _chest_pair(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[str], str, dict]:
    """One v2 chest X-ray with 0-4 lesions, its captions, its content key and its findings (a corpus field)."""
    image, _, _, _, findings = render_chest_xray_kinds(rng, size, n_lesions=int(rng.integers(0, 5)))
    content = "chest:" + (";".join(f"{f['kind']}@{f['zone']}" for f in findings) or "clear")
    return image, _chest_captions(rng, findings, 3), content, {"findings": findings}


_PAIR_MAKERS = {"chest": _chest_pair, "fundus": _fundus_pair, "cardiac": _cardiac_pair}


def make_caption_corpus(
    out_dir: str | os.PathLike,
    counts: Mapping[str, int] | None = None,
    held_out: int = 200,
    image_size: int = 128,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Write an image-caption corpus for contrastive CLIP pretraining, disjoint from every evaluation image.

    Sources (:data:`CORPUS_SOURCES`): ``chest`` (:func:`render_chest_xray_kinds` with 0-4 lesions; captions in
    :data:`CAPTION_APPEARANCE` words, never a clinical term), ``fundus`` (the source camera ``domain_a`` only: whole
    views and close views of the disc or of the retina) and ``cardiac`` (the source sequence ``bssfp`` only: whole
    short-axis slices and close views of the heart). Fundus and cardiac captions name the structures as the VLSA-Net class prompts
    do and describe shape and position, never colour or brightness (which change between domains).

    Disjointness by construction: sample ``i`` of a source and part draws from ``sample_rng(seed, CORPUS_KEY,
    source, part, i)``, a four-element key, while every evaluation image is keyed by two elements (split or domain,
    index); no corpus image repeats an evaluation image of any seed.

    Layout::

        out_dir/images/<source>/<source>_<part>_<i>.png   grayscale (chest, cardiac) or RGB (fundus) uint8
        out_dir/corpus.json                               {"training": [...], "held_out": [...]}, items {"image"
                                                          (relative to out_dir), "source", "captions" (three
                                                          phrasings), "content" (what the image shows, a key);
                                                          chest items also "findings" ([{"kind", "zone"}])}
        out_dir/synthetic.json                            generator name, parameters and counts

    Args:
        out_dir: output folder; must be missing or empty unless ``overwrite``.
        counts: training pairs per source; default ``{"chest": 5000, "fundus": 1500, "cardiac": 1500}``.
        held_out: held-out pairs per source (retrieval benchmark).
        image_size: side of the square images (>= 64).
        seed: random seed; the same seed gives byte-identical files.
        overwrite: replace an earlier synthetic dataset in ``out_dir``.

    Returns:
        summary dict: ``out_dir``, ``corpus`` (path of corpus.json), ``counts``.
    """
    counts = dict(counts or {"chest": 5000, "fundus": 1500, "cardiac": 1500})
    unknown = set(counts) - set(CORPUS_SOURCES)
    if unknown:
        raise ValueError(f"Unknown corpus sources {sorted(unknown)}; choose from {list(CORPUS_SOURCES)}.")
    counts = {source: check_count(f"counts[{source!r}]", n) for source, n in counts.items()}
    held_out = check_count("held_out", held_out)
    image_size = check_image_size(image_size, minimum=64)
    out_dir = os.path.abspath(os.fspath(out_dir))
    corpus = {part: [] for part in _CORPUS_PARTS}
    with staged_output_dir(out_dir, overwrite=overwrite) as staging:
        for source, n_training in counts.items():
            source_index = list(CORPUS_SOURCES).index(source)
            for part_index, (part, n) in enumerate(zip(_CORPUS_PARTS, (n_training, held_out))):
                for i in range(n):
                    rng = sample_rng(seed, CORPUS_KEY, source_index, part_index, i)
                    image, captions, content, extra = _PAIR_MAKERS[source](rng, image_size)
                    path = f"images/{source}/{source}_{part}_{i:05d}.png"
                    write_png(_resize(image, image_size), os.path.join(staging, path))
                    corpus[part].append(
                        {"image": path, "source": source, "captions": captions, "content": content, **extra}
                    )
        write_json(corpus, os.path.join(staging, "corpus.json"))
        summary = {
            "generator": "make_caption_corpus",
            "parameters": {"image_size": image_size, "seed": int(seed), "corpus_key": CORPUS_KEY},
            "counts": {"training": counts, "held_out": dict.fromkeys(counts, held_out)},
            "sources": {source: CORPUS_SOURCES[source] for source in counts},
        }
        write_json(summary, os.path.join(staging, MARKER_FILE))
    return {**summary, "out_dir": out_dir, "corpus": os.path.join(out_dir, "corpus.json")}

"""Synthetic colour fundus photographs with optic disc/cup labels, rendered by four imitation "scanners" (domains).

Used for single-source domain generalisation demos (VLSA-Net): train on one domain, test on the others. The domains
differ only in appearance (colour cast, contrast, gamma, blur, noise, vignetting, resolution); anatomy is drawn from
the same distribution, with different eyes in each domain.

Labels are index maps: 0 background, 1 optic disc rim (disc minus cup), 2 optic cup. The usual evaluation regions
are therefore ``disc = label >= 1`` and ``cup = label == 2`` (REFUGE/RIGA-style disc and cup masks).

Images show the whole field of view. Real domain-generalisation fundus benchmarks (e.g. the four-site Fundus set of
DoFE used by VLSA-Net) are crops centred on the disc; crop around the label (e.g. MONAI ``CropForegroundd`` with a
margin) to imitate them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

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
    split_counts,
    staged_output_dir,
    write_json,
    write_png,
)

__all__ = [
    "FundusDomain",
    "FUNDUS_DOMAINS",
    "FUNDUS_LABELS",
    "RIGA_DEMO_SITES",
    "render_fundus",
    "make_fundus_dataset",
    "make_ccsdg_riga_release",
]

FUNDUS_LABELS = {"background": 0, "disc_rim": 1, "cup": 2}


@dataclass(frozen=True)
class FundusDomain:
    """Appearance of one imitation fundus camera.

    Attributes:
        description: readable summary of the domain's look.
        colour_gain: multiplicative RGB white balance.
        contrast: contrast around the mean colour of the field of view (1 = unchanged).
        gamma: exponent applied to intensities in [0, 1].
        blur: Gaussian blur sigma as a fraction of the image size.
        noise: standard deviation of additive Gaussian noise (intensities in [0, 1]).
        vignetting: darkening towards the edge of the field of view (0 = none, 1 = black at the edge).
        render_scale: the image is rendered at this fraction of the output size and upsampled (a low-resolution camera).
    """

    description: str
    colour_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    contrast: float = 1.0
    gamma: float = 1.0
    blur: float = 0.002
    noise: float = 0.01
    vignetting: float = 0.2
    render_scale: float = 1.0


FUNDUS_DOMAINS = {
    "domain_a": FundusDomain(description="reference camera: neutral colour, good contrast, sharp, little noise"),
    "domain_b": FundusDomain(
        description="warm, reddish camera with low contrast and strong vignetting",
        colour_gain=(1.15, 0.85, 0.7),
        contrast=0.7,
        gamma=0.9,
        vignetting=0.6,
    ),
    "domain_c": FundusDomain(
        description="cool, greenish camera, dark gamma, blurred and noisy",
        colour_gain=(0.8, 1.1, 1.2),
        gamma=1.4,
        blur=0.006,
        noise=0.05,
    ),
    "domain_d": FundusDomain(
        description="low-resolution camera (rendered at a third of the size, upsampled), bright and washed out",
        colour_gain=(1.0, 1.05, 1.0),
        contrast=0.85,
        gamma=0.7,
        noise=0.02,
        render_scale=1.0 / 3.0,
    ),
}


def _curve(rng: np.random.Generator, start: np.ndarray, angle: float, bend: float, length: float, step: float):
    """Points ``(n, 2)`` (y, x) of a smooth random curve from ``start`` heading along ``angle`` (radians, image axes),
    turning by ``bend`` radians per unit length on average, and the heading at each point."""
    n = max(2, int(length / step))
    wiggle = ndimage.gaussian_filter1d(rng.standard_normal(n), sigma=n / 8) * np.sqrt(n / 8)
    headings = angle + np.cumsum(np.full(n, bend * step) + 0.04 * wiggle * np.sqrt(step))
    offsets = np.cumsum(np.stack([np.sin(headings), np.cos(headings)], axis=1) * step, axis=0)
    return start + offsets, headings


def _vessel_tree(rng: np.random.Generator, size: int, disc_centre: np.ndarray, eye_side: float) -> np.ndarray:
    """Vessel map in [0, 1] (``size x size``): four trunks leaving the disc, each branching twice.

    The superior and inferior temporal arcades leave the disc vertically and curve towards the macula; the nasal
    vessels run away from it. Curves are rasterised per generation and thickened by blurring (thicker trunks).
    ``eye_side`` is +1 when the disc lies right of the macula in the image, -1 when left.
    """
    step = 1.4 / size  # ~0.7 pixel, so rasterised curves have no gaps
    temporal = np.pi if eye_side > 0 else 0.0  # heading from the disc towards the macula
    trunks = [
        (-np.pi / 2 - eye_side * 0.3, -eye_side * 1.6),  # superior temporal: up, then bending towards the macula
        (np.pi / 2 + eye_side * 0.3, eye_side * 1.6),  # inferior temporal
        (temporal + np.pi - eye_side * 0.8, 0.3 * eye_side),  # superior nasal
        (temporal + np.pi + eye_side * 0.8, -0.3 * eye_side),  # inferior nasal
    ]
    widths = (0.007, 0.0045, 0.003)  # blur sigma per generation, fraction of the image size
    canvases = np.zeros((len(widths), size, size), np.float32)
    pending = [(disc_centre, angle, bend, rng.uniform(1.1, 1.5), 0) for angle, bend in trunks]
    while pending:
        start, angle, bend, length, generation = pending.pop()
        points, headings = _curve(rng, start, angle, bend, length, step)
        pixels = np.floor((points + 1.0) / 2.0 * size).astype(int)
        inside = np.all((pixels >= 0) & (pixels < size), axis=1)
        canvases[generation, pixels[inside, 0], pixels[inside, 1]] = 1.0
        if generation + 1 < len(widths):
            for fraction in rng.uniform(0.2, 0.8, size=2):
                at = int(fraction * (len(points) - 1))
                side = rng.choice([-1.0, 1.0])
                pending.append(
                    (
                        points[at],
                        headings[at] + side * rng.uniform(0.5, 1.0),
                        side * rng.uniform(0.0, 1.5),
                        length * rng.uniform(0.35, 0.55),
                        generation + 1,
                    )
                )
    vessels = np.zeros((size, size), np.float32)
    for canvas, width in zip(canvases, widths):
        sigma = max(width * size, 0.5)
        # A blurred one-pixel line peaks at 1 / (sqrt(2 pi) sigma); rescale so every vessel's centre reaches ~1.
        vessels = np.maximum(vessels, ndimage.gaussian_filter(canvas, sigma) * np.sqrt(2 * np.pi) * sigma)
    return np.clip(vessels, 0.0, 1.0)


def _soft(radius: np.ndarray, edge: float) -> np.ndarray:
    return np.clip((1.0 - radius) / edge + 0.5, 0.0, 1.0)


def render_fundus(
    rng: np.random.Generator, image_size: int, domain: FundusDomain
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Draw one fundus photograph as seen by ``domain``'s camera.

    Returns:
        ``(image, label, geometry)``: uint8 RGB ``(H, W, 3)`` image, uint8 ``(H, W)`` label (0 background,
        1 disc rim, 2 cup) and a dict with ``cup_disc_ratio`` (vertical, as defined clinically) and ``eye``.
    """
    eye_side = float(rng.choice([-1.0, 1.0]))
    disc_centre = np.array([rng.uniform(-0.12, 0.12), eye_side * rng.uniform(0.28, 0.45)])
    disc_rx = rng.uniform(0.11, 0.16)
    disc_ry = disc_rx * rng.uniform(1.0, 1.15)  # discs are slightly taller than wide
    disc_angle = rng.uniform(-0.2, 0.2)
    cup_disc_ratio = rng.uniform(0.3, 0.7)
    # Cup: the disc ellipse scaled by the ratio, shifted by at most half the spare room: a rim always surrounds it.
    shift_direction = rng.uniform(0, 2 * np.pi)
    shift = rng.uniform(0.0, 0.5 * (1.0 - cup_disc_ratio)) * np.array(
        [np.sin(shift_direction), np.cos(shift_direction)]
    )
    cos, sin = np.cos(disc_angle), np.sin(disc_angle)
    cup_centre = disc_centre + np.array(
        [sin * shift[1] * disc_rx + cos * shift[0] * disc_ry, cos * shift[1] * disc_rx - sin * shift[0] * disc_ry]
    )
    macula = disc_centre + np.array([rng.uniform(-0.05, 0.05), -eye_side * rng.uniform(0.5, 0.6)])
    fov_radius = rng.uniform(0.88, 0.95)

    def geometry(size: int):
        yy, xx = normalized_grid(size)
        disc = ellipse_radius(yy, xx, *disc_centre, disc_ry, disc_rx, disc_angle)
        cup = ellipse_radius(yy, xx, *cup_centre, disc_ry * cup_disc_ratio, disc_rx * cup_disc_ratio, disc_angle)
        return yy, xx, disc, cup

    yy, xx, disc, cup = geometry(image_size)
    label = np.where(cup < 1.0, 2, np.where(disc < 1.0, 1, 0)).astype(np.uint8)
    fov = (np.sqrt(yy**2 + xx**2) < fov_radius).astype(np.float32)

    render_size = max(16, int(round(image_size * domain.render_scale)))
    ryy, rxx, rdisc, rcup = geometry(render_size)
    edge = 3.0 / render_size
    r2 = (ryy**2 + rxx**2) / fov_radius**2
    texture = smooth_noise(rng, render_size, cells=12)
    retina = np.stack([0.78 + 0.03 * texture, 0.36 + 0.03 * texture, 0.15 + 0.02 * texture], axis=-1)
    retina *= (1.0 - 0.25 * r2)[..., None]
    macula_shadow = np.exp(-((ryy - macula[0]) ** 2 + (rxx - macula[1]) ** 2) / (2 * 0.08**2))
    retina *= (1.0 - 0.35 * macula_shadow)[..., None]
    disc_weight = _soft(rdisc, 2.5 * edge)[..., None]
    retina = retina * (1 - disc_weight) + disc_weight * np.array([0.97, 0.74, 0.45])
    cup_weight = _soft(rcup, 2.5 * edge)[..., None]
    retina = retina * (1 - cup_weight) + cup_weight * np.array([1.0, 0.92, 0.72])
    vessels = _vessel_tree(rng, render_size, disc_centre, eye_side)[..., None]
    retina *= 1.0 - vessels * np.array([0.4, 0.6, 0.6])
    retina = ndimage.gaussian_filter(retina, sigma=(domain.blur * render_size, domain.blur * render_size, 0))
    if render_size != image_size:
        retina = ndimage.zoom(retina, (image_size / render_size, image_size / render_size, 1), order=1)

    yy2 = (yy**2 + xx**2) / fov_radius**2
    image = retina * np.asarray(domain.colour_gain) * (1.0 - domain.vignetting * yy2)[..., None]
    image = np.clip(image, 0.0, 1.0) ** domain.gamma
    mean_colour = image[fov > 0].mean(axis=0)  # contrast about the mean keeps the colour cast
    image = (image - mean_colour) * domain.contrast + mean_colour
    image = image + rng.normal(0.0, domain.noise, image.shape)
    image = np.clip(image, 0.0, 1.0) * fov[..., None] + 0.01 * (1.0 - fov[..., None])
    image = np.round(image * 255).astype(np.uint8)
    return image, label, {"cup_disc_ratio": float(cup_disc_ratio), "eye": "disc right" if eye_side > 0 else "disc left"}


def _check_domains(domains: Sequence[str] | None) -> list[str]:
    if domains is None:
        return list(FUNDUS_DOMAINS)
    if isinstance(domains, str):
        domains = [domains]
    unknown = [d for d in domains if d not in FUNDUS_DOMAINS]
    if unknown or not domains:
        raise ValueError(f"Unknown fundus domain(s) {unknown or domains}; choose from {list(FUNDUS_DOMAINS)}.")
    return list(dict.fromkeys(domains))


def make_fundus_dataset(
    out_dir: str | os.PathLike,
    n_per_domain: int = 50,
    image_size: int = 256,
    seed: int = 0,
    domains: Sequence[str] | None = None,
    test_fraction: float = 0.2,
    overwrite: bool = False,
) -> dict:
    """Write a synthetic multi-domain fundus dataset for optic disc/cup segmentation.

    Layout (``<d>`` a domain name from :data:`FUNDUS_DOMAINS`, ``domain_a`` .. ``domain_d``)::

        out_dir/<d>/images/<d>_0000.png   RGB uint8 fundus image
        out_dir/<d>/masks/<d>_0000.png    uint8 index map: 0 background, 1 disc rim, 2 cup (disc = label >= 1)
        out_dir/<d>/datalist.json         {"training": [...], "test": [...]}, items {"image", "label", "domain"},
                                          paths relative to out_dir/<d> (MONAI decathlon-style datalist)
        out_dir/domains.json              each domain's description, appearance parameters and counts
        out_dir/synthetic.json            generator name, parameters and counts

    Each domain holds ``n_per_domain`` different eyes, the last ``round(n_per_domain * test_fraction)`` of them in
    "test" (single-source domain generalisation: train on one domain's "training" list, test on the other domains).
    Sample ``i`` of a domain is the same for any count and whichever other domains are generated.

    Args:
        out_dir: output folder; must be missing or empty unless ``overwrite`` (replaces an earlier synthetic dataset).
        n_per_domain: images per domain.
        image_size: side of the square images in pixels (>= 32).
        seed: random seed; the same seed gives byte-identical files.
        domains: names of the domains to write (default all four).
        test_fraction: fraction of each domain listed under "test".
        overwrite: replace an existing synthetic dataset in ``out_dir``.

    Returns:
        summary dict: ``out_dir``, ``domains`` (name -> counts and datalist path).

    Example::

        make_fundus_dataset("data/fundus", n_per_domain=20, image_size=128)
        train = load_text_datalist("data/fundus/domain_a/datalist.json", key="training")
    """
    n_per_domain = check_count("n_per_domain", n_per_domain, minimum=1)
    image_size = check_image_size(image_size)
    names = _check_domains(domains)
    n_training, n_test = split_counts(n_per_domain, test_fraction)
    out_dir = os.path.abspath(os.fspath(out_dir))
    description = {}
    with staged_output_dir(out_dir, overwrite=overwrite) as staging:
        for name in names:
            domain = FUNDUS_DOMAINS[name]
            domain_index = list(FUNDUS_DOMAINS).index(name)  # fixed per name, so domains are independent of each other
            items = []
            for i in range(n_per_domain):
                image, label, _ = render_fundus(sample_rng(seed, domain_index, i), image_size, domain)
                item = {"image": f"images/{name}_{i:04d}.png", "label": f"masks/{name}_{i:04d}.png", "domain": name}
                write_png(image, os.path.join(staging, name, item["image"]))
                write_png(label, os.path.join(staging, name, item["label"]))
                items.append(item)
            write_json(
                {"training": items[:n_training], "test": items[n_training:]},
                os.path.join(staging, name, "datalist.json"),
            )
            description[name] = {**asdict(domain), "n_training": n_training, "n_test": n_test}
        write_json({"domains": description, "labels": FUNDUS_LABELS}, os.path.join(staging, "domains.json"))
        summary = {
            "generator": "make_fundus_dataset",
            "parameters": {"image_size": image_size, "seed": int(seed), "test_fraction": float(test_fraction)},
            "counts": {name: {"training": n_training, "test": n_test} for name in names},
        }
        write_json(summary, os.path.join(staging, MARKER_FILE))
    return {
        **summary,
        "out_dir": out_dir,
        "datalists": {name: os.path.join(out_dir, name, "datalist.json") for name in names},
    }


# RIGA+ site -> the imitation camera its demo images are drawn with, and the sub-folder of RIGA/<site>/ they go to.
RIGA_DEMO_SITES = {
    "BinRushed": ("domain_a", "BinRushed1"),
    "Magrabia": ("domain_b", "MagrabiaMale"),
    "MESSIDOR_Base1": ("domain_c", "Labeled"),
    "MESSIDOR_Base2": ("domain_d", "Labeled"),
    "MESSIDOR_Base3": ("domain_b", "Labeled"),
}

# Label index -> value in CCSDG's RIGA+ masks (0 background, 255 disc rim, 128 cup; CCSDG's loader reads > 0 as
# disc and 128 as cup).
_RIGA_MASK_VALUES = np.array([0, 255, 128], np.uint8)


def _disc_crop(image: np.ndarray, label: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` square around the disc (RIGA+ images are crops around the optic nerve head)."""
    rows, columns = np.nonzero(label)
    centre = (int(rows.mean()), int(columns.mean())) if rows.size else (label.shape[0] // 2, label.shape[1] // 2)
    top, left = (min(max(c - size // 2, 0), label.shape[0] - size) for c in centre)
    return image[top : top + size, left : left + size], label[top : top + size, left : left + size]


def make_ccsdg_riga_release(
    out_dir: str | os.PathLike,
    n_train: int = 4,
    n_test: int = 2,
    image_size: int = 800,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Write a synthetic stand-in of CCSDG's RIGA+ release (Zenodo record 6325549) with its folders, files, lists
    and mask values, for dry runs of the ``riga_ccsdg`` DG protocol (:func:`monai_ext.data.prepare_ccsdg_riga`).

    Layout (``<site>`` one of :data:`RIGA_DEMO_SITES`: BinRushed, Magrabia, MESSIDOR_Base1/2/3)::

        out_dir/<site>_train.csv, <site>_test.csv   header "image,mask"; rows "RIGA/<site>/<sub>/image<k>.tif,
                                                    RIGA-mask/<site>/<sub>/image<k>.tif" (the loader reads rater 1:
                                                    image<k>-1.tif)
        out_dir/RIGA/<site>/<sub>/image<k>.tif      RGB uint8 TIFF, ``image_size`` square crop around the disc
        out_dir/RIGA-mask/<site>/<sub>/image<k>-1.tif  uint8 TIFF: 0 background, 255 disc rim, 128 cup
        out_dir/synthetic.json                      generator name, parameters and counts

    Only rater 1's mask is written (the release has six); each site is drawn by one imitation camera of
    :data:`FUNDUS_DOMAINS`, and the sub-folder names follow third-party descriptions of the release, which the
    protocol does not rely on (it follows the lists).

    Args:
        out_dir: output folder; must be missing or empty unless ``overwrite`` (replaces an earlier synthetic set).
        n_train, n_test: images in each site's ``_train`` and ``_test`` list.
        image_size: side of the square images (the release's are 800).
        seed: random seed; the same seed gives identical images.
        overwrite: replace an existing synthetic dataset in ``out_dir``.

    Returns:
        summary dict: ``out_dir``, ``counts`` per site.
    """
    n_train = check_count("n_train", n_train, minimum=1)
    n_test = check_count("n_test", n_test, minimum=1)
    image_size = check_image_size(image_size)
    out_dir = os.path.abspath(os.fspath(out_dir))
    with staged_output_dir(out_dir, overwrite=overwrite) as staging:
        for site_index, (site, (camera, sub)) in enumerate(RIGA_DEMO_SITES.items()):
            rows = {"train": [], "test": []}
            for k in range(n_train + n_test):
                rng = sample_rng(seed, 100 + site_index, k)
                image, label, _ = render_fundus(rng, 2 * image_size, FUNDUS_DOMAINS[camera])
                image, label = _disc_crop(image, label, image_size)
                name = f"RIGA/{site}/{sub}/image{k + 1}.tif"
                mask = f"RIGA-mask/{site}/{sub}/image{k + 1}.tif"
                for array, path in ((image, name), (_RIGA_MASK_VALUES[label], mask[: -len(".tif")] + "-1.tif")):
                    os.makedirs(os.path.dirname(os.path.join(staging, path)), exist_ok=True)
                    Image.fromarray(array).save(os.path.join(staging, path), format="TIFF")
                rows["train" if k < n_train else "test"].append(f"{name},{mask}")
            for split, lines in rows.items():
                with open(os.path.join(staging, f"{site}_{split}.csv"), "w", encoding="utf-8") as f:
                    f.write("image,mask\n" + "".join(f"{line}\n" for line in lines))
        summary = {
            "generator": "make_ccsdg_riga_release",
            "parameters": {"image_size": image_size, "seed": int(seed)},
            "counts": {site: {"train": n_train, "test": n_test} for site in RIGA_DEMO_SITES},
        }
        write_json(summary, os.path.join(staging, MARKER_FILE))
    return {**summary, "out_dir": out_dir}

"""Label maps (label-file value -> class index) and their check against the label files, before any training.

A map whose every value occurs in the data passes :class:`~monai_ext.data.ValidateLabelValuesd` even when it is
semantically wrong: the ``refuge`` map (255 background, 128 disc rim, 0 cup) applied to CCSDG's RIGA+ masks (0
background, 255 disc, 128 cup) swaps background and cup, and our cardiac order (1 LV, 2 myocardium) applied to SLAug's
MS-CMRSeg release (1 myocardium, 2 LV) binds the "left ventricle" prompt to myocardium pixels. :func:`check_label_map`
reads a deterministic sample of the label files and checks the map against the task's anatomy:

- **background**: the class the map calls background is the most frequent class (pixels summed over the sample);
- **nesting**: a class the anatomy encloses lies inside its enclosing class (fundus: the optic cup inside the disc
  rim; cardiac: the left-ventricle cavity inside the myocardium ring): of the pixels just outside the inner class
  (4-neighbourhood in each 2D slice, the image's edge counting as outside), at most ``max_open_border`` (20 %) may be
  anything but the enclosing class, over the slices where both classes are present.

A map that fails raises :class:`LabelMapError` naming the files, the value counts, the failed rule and the known map
or class permutation that passes both rules, if one does.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from monai_ext.data.readers import CheckedLoadImage
from scipy import ndimage

__all__ = [
    "LABEL_MAPS",
    "LABEL_MAP_DESCRIPTIONS",
    "LABEL_CLASSES",
    "MSCMRSEG_LABEL_MAP",
    "LabelClasses",
    "LabelMapError",
    "check_label_map",
    "known_label_releases",
    "label_map_from_values",
    "label_map_name",
    "sample_label_files",
]


# MS-CMRSeg 2019 label value -> class index used by the bundles (1 LV, 2 myocardium, 3 RV).
MSCMRSEG_LABEL_MAP = {500: 1, 200: 2, 600: 3}

# Label value in the files -> class index used by the bundles (their label_orig_values / label_target_values); values
# a map does not name are kept as they are.
LABEL_MAPS: dict[str, dict[int, int]] = {
    "index": {},  # already 0 background, 1 disc rim / LV, 2 cup / myocardium, 3 RV
    "refuge": {255: 0, 128: 1, 0: 2},  # REFUGE / DoFE style: 255 background, 128 disc rim, 0 cup
    "ccsdg": {255: 1, 128: 2},  # CCSDG's RIGA+ masks: 0 background, 255 disc (rim), 128 cup
    "mscmrseg": MSCMRSEG_LABEL_MAP,  # MS-CMRSeg 2019: 500 LV, 200 myocardium, 600 RV
    "slaug": {1: 2, 2: 1},  # SLAug's preprocessed MS-CMRSeg: 1 myocardium, 2 LV, 3 RV
}

LABEL_MAP_DESCRIPTIONS = {
    "index": "class indices as stored (fundus 0 background, 1 disc rim, 2 cup; cardiac 1 LV, 2 myocardium, 3 RV)",
    "refuge": "REFUGE / DoFE style: 255 background, 128 disc rim, 0 cup",
    "ccsdg": "CCSDG's RIGA+ masks: 0 background, 255 disc rim, 128 cup",
    "mscmrseg": "MS-CMRSeg 2019: 500 LV, 200 myocardium, 600 RV",
    "slaug": "SLAug's MS-CMRSeg release: 0 background, 1 myocardium, 2 LV, 3 RV",
}


# The task a known map is for ("index" is for both).
_MAP_TASKS = {"refuge": "fundus", "ccsdg": "fundus", "mscmrseg": "cardiac", "slaug": "cardiac"}


@dataclass(frozen=True)
class LabelClasses:
    """What a task's class indices mean: ``names[i]`` is class ``i`` (0 is background) and each ``(inner, outer)`` of
    ``enclosed`` is a class that lies inside another."""

    names: tuple[str, ...]
    enclosed: tuple[tuple[int, int], ...] = field(default=())


LABEL_CLASSES: dict[str, LabelClasses] = {
    "fundus": LabelClasses(("background", "optic disc rim", "optic cup"), enclosed=((2, 1),)),
    "cardiac": LabelClasses(("background", "left ventricle", "myocardium", "right ventricle"), enclosed=((1, 2),)),
}

# Published releases recognised from their value sets: (values, task, description, the maps that may fit them).
_RELEASES = (
    (
        frozenset({0, 128, 255}),
        "fundus",
        "REFUGE / DoFE-style masks (255 background, 0 cup) or CCSDG's RIGA+ masks (0 background, 128 cup)",
        ("refuge", "ccsdg"),
    ),
    (
        frozenset({0, 200, 500, 600}),
        "cardiac",
        "the MS-CMRSeg 2019 release (500 LV, 200 myocardium, 600 RV)",
        ("mscmrseg",),
    ),
    (frozenset({0, 1, 2}), "fundus", "class indices (0 background, 1 disc rim, 2 cup)", ("index",)),
    (
        frozenset({0, 1, 2, 3}),
        "cardiac",
        "class indices: ours (1 LV, 2 myocardium) or SLAug's (1 myocardium, 2 LV)",
        ("index", "slaug"),
    ),
)

# In-plane 4-neighbourhood of a (x, y, slice) array: each 2D slice on its own.
_PLANE_NEIGHBOURS = np.zeros((3, 3, 3), bool)
_PLANE_NEIGHBOURS[1, :, 1] = _PLANE_NEIGHBOURS[:, 1, 1] = True


class LabelMapError(ValueError):
    """A label map contradicts the label files: background is not the most frequent class, an enclosed class is not
    enclosed, or values are not classes. The message names the files, the value counts, the failed rules and the map
    that passes, if any."""


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def known_label_releases(values: Sequence[float], task: str | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """The published releases whose value set holds ``values`` (all of it, or three of its values):
    ``[(description, names of the maps in LABEL_MAPS that may fit)]``, for ``task`` only when given.

    Example::

        >>> known_label_releases([0, 200, 500, 600])
        [('the MS-CMRSeg 2019 release (500 LV, 200 myocardium, 600 RV)', ('mscmrseg',))]
    """
    found = {_number(v) for v in values}
    return [
        (description, maps)
        for release, release_task, description, maps in _RELEASES
        if (task is None or task == release_task) and found <= release and len(found) >= min(3, len(release))
    ]


def label_map_from_values(label_orig_values: Sequence[int], label_target_values: Sequence[int]) -> dict[int, int]:
    """The label map a bundle's ``label_orig_values`` -> ``label_target_values`` (``MapLabelValued``) applies.

    Raises:
        ValueError: the two lists differ in length.

    Example::

        >>> label_map_from_values([255, 128], [1, 2])
        {255: 1, 128: 2}
    """
    orig, target = [int(v) for v in label_orig_values], [int(v) for v in label_target_values]
    if len(orig) != len(target):
        raise ValueError(f"label_orig_values {orig} and label_target_values {target} differ in length.")
    return dict(zip(orig, target))


def label_map_name(label_map: Mapping[int, int], task: str | None = None) -> str | None:
    """The name in :data:`LABEL_MAPS` of ``label_map`` (for ``task`` when given), or None when it is none of them.

    Example::

        >>> label_map_name({255: 1, 128: 2})
        'ccsdg'
    """
    label_map = {int(k): int(v) for k, v in dict(label_map).items()}
    return next(
        (
            name
            for name, known in LABEL_MAPS.items()
            if known == label_map and (task is None or _MAP_TASKS.get(name, task) == task)
        ),
        None,
    )


def sample_label_files(label_files: Sequence[str], max_files: int | None = 20) -> list[str]:
    """Up to ``max_files`` of the distinct ``label_files`` (sorted), evenly spaced: the same sample for the same list."""
    files = sorted({os.fspath(f) for f in label_files})
    if max_files is None or len(files) <= max_files:
        return files
    if max_files < 1:
        raise ValueError(f"max_files must be at least 1, got {max_files}.")
    picks = np.unique(np.linspace(0, len(files) - 1, int(max_files)).round().astype(int))
    return [files[i] for i in picks]


@dataclass
class _Nesting:
    """Border statistics of an inner region over the slices where it and its enclosing region are both present."""

    slices: int = 0
    open_slices: int = 0
    border: int = 0
    enclosed: int = 0

    def add(self, other: _Nesting) -> None:
        self.slices += other.slices
        self.open_slices += other.open_slices
        self.border += other.border
        self.enclosed += other.enclosed

    @property
    def open_fraction(self) -> float:
        return 1.0 - self.enclosed / self.border if self.border else 0.0


def _nesting(inner: np.ndarray, outer: np.ndarray, max_open_border: float) -> _Nesting:
    """``inner``/``outer``: boolean (x, y, slice) arrays padded by one pixel in-plane (the outside belongs to neither)."""
    both = inner.any(axis=(0, 1)) & outer.any(axis=(0, 1))
    if not both.any():
        return _Nesting()
    inner, outer = inner[..., both], outer[..., both]
    ring = ndimage.binary_dilation(inner, structure=_PLANE_NEIGHBOURS) & ~inner
    border = ring.sum(axis=(0, 1))
    enclosed = (ring & outer).sum(axis=(0, 1))
    open_slices = int((border - enclosed > max_open_border * border).sum())
    return _Nesting(int(both.sum()), open_slices, int(border.sum()), int(enclosed.sum()))


@dataclass
class _FileStats:
    path: str
    counts: dict[int | float, int]
    # (inner value, outer value) -> border statistics of the values as stored (for files with few values).
    pairs: dict[tuple[int | float, int | float], _Nesting]
    # (inner class, outer class) -> border statistics of the classes the checked map gives (None: values not classes).
    classes: dict[tuple[int, int], _Nesting] | None


def _padded(array: np.ndarray, fill: float) -> np.ndarray:
    return np.pad(array, ((1, 1), (1, 1), (0, 0)), constant_values=fill)


def _file_stats(
    path: str, array: np.ndarray, mapping: Mapping[int | float, int | float], classes: LabelClasses, limit: float
) -> _FileStats:
    """Value counts, the border statistics of every pair of stored values (when there are no more values than
    classes) and those of the classes ``mapping`` gives; ``array`` is (x, y, slice)."""
    values, index, counts = np.unique(array, return_inverse=True, return_counts=True)
    keys = [_number(v) for v in values]
    stats = _FileStats(path, dict(zip(keys, (int(c) for c in counts))), {}, None)
    if len(values) <= len(classes.names):
        padded = _padded(array, np.nan)  # the outside is no value
        masks = {k: padded == v for k, v in zip(keys, values)}
        for (a, inner), (b, outer) in itertools.permutations(masks.items(), 2):
            stats.pairs[(a, b)] = _nesting(inner, outer, limit)
    mapped = np.array([mapping.get(k, k) for k in keys], dtype=np.float64)
    if all(float(c).is_integer() and 0 <= c < len(classes.names) for c in mapped):
        class_array = _padded(mapped.astype(np.int64)[index.reshape(array.shape)], -1)
        stats.classes = {(i, o): _nesting(class_array == i, class_array == o, limit) for i, o in classes.enclosed}
    return stats


def _read(loader: CheckedLoadImage, path: str) -> np.ndarray:
    array = np.asarray(loader(path).as_tensor()[0], dtype=np.float32)
    return array[..., None] if array.ndim == 2 else array


@dataclass
class _Verdict:
    """The two rules for one map (stored value -> class) over the sample."""

    class_counts: list[int]
    background_files: int  # files whose most frequent class is background
    nesting: dict[tuple[int, int], _Nesting]

    def background_ok(self) -> bool:
        return self.class_counts[0] > 0 and self.class_counts[0] == max(self.class_counts)

    def nesting_ok(self, limit: float) -> bool:
        return all(n.open_fraction <= limit for n in self.nesting.values())

    def fully_tested(self) -> bool:
        return all(n.slices > 0 for n in self.nesting.values())


def _verdict(
    stats: Sequence[_FileStats], mapping: Mapping[int | float, int], classes: LabelClasses, checked: bool = False
) -> _Verdict:
    """The rules for ``mapping`` (every stored value -> a class). Nesting comes from the class statistics of the
    checked map (``checked``: ``mapping`` is that map, which may merge values) or else from the stored-value pairs
    (``mapping`` one-to-one)."""
    class_counts = [0] * len(classes.names)
    background_files = 0
    nesting = {pair: _Nesting() for pair in classes.enclosed}
    for s in stats:
        per_class = [0] * len(classes.names)
        for value, count in s.counts.items():
            per_class[mapping[value]] += count
        class_counts = [a + b for a, b in zip(class_counts, per_class)]
        background_files += int(per_class[0] == max(per_class))
        if checked:
            for pair, border in (s.classes or {}).items():
                nesting[pair].add(border)
            continue
        for inner, outer in classes.enclosed:
            inner_value = [v for v in s.counts if mapping[v] == inner]
            outer_value = [v for v in s.counts if mapping[v] == outer]
            if inner_value and outer_value:
                nesting[(inner, outer)].add(s.pairs[(inner_value[0], outer_value[0])])
    return _Verdict(class_counts, background_files, nesting)


def _permutations(values: Sequence[int | float], classes: LabelClasses) -> list[dict[int | float, int]]:
    """Every one-to-one assignment of the stored values to classes."""
    if len(values) > len(classes.names):
        return []
    return [dict(zip(values, chosen)) for chosen in itertools.permutations(range(len(classes.names)), len(values))]


def _known_map_names(values: Sequence[int | float], task: str) -> dict[tuple, str]:
    """``{sorted (value, class) items: name}`` of the maps of :data:`LABEL_MAPS` for ``task`` that turn ``values``
    into its classes."""
    names, num_classes = {}, len(LABEL_CLASSES[task].names)
    for name, label_map in LABEL_MAPS.items():
        mapping = {v: label_map.get(v, v) for v in values}
        if _MAP_TASKS.get(name, task) != task:
            continue
        if all(isinstance(c, int) and 0 <= c < num_classes for c in mapping.values()):
            names.setdefault(tuple(sorted(mapping.items())), name)
    return names


def _values_text(values: Sequence[int | float]) -> str:
    return ("value " if len(values) == 1 else "values ") + ", ".join(_fmt(v) for v in values)


def check_label_map(
    label_files: Sequence[str],
    label_map: Mapping[int, int] | str,
    task: str,
    map_name: str | None = None,
    max_files: int | None = 20,
    max_open_border: float = 0.2,
    where: str | None = None,
) -> dict[str, Any]:
    """Check that ``label_map`` fits the label files of ``task`` before training on them.

    Reads up to ``max_files`` label files, evenly spaced over the sorted list, as the bundles read them
    (:class:`~monai_ext.data.CheckedLoadImage`), maps their values with ``label_map`` (values it does not name are
    kept, as ``MapLabelValued`` does) and checks:

    - **values**: every mapped value is a class of ``task`` (:data:`LABEL_CLASSES`);
    - **background**: background is the most frequent class, by pixels summed over the files;
    - **nesting**: each enclosed class (fundus: optic cup in disc rim; cardiac: LV cavity in myocardium) has at most
      ``max_open_border`` of its outer border (the 4-neighbours of the region in each 2D slice; the image's edge
      counts as outside) in anything but the enclosing class, pooled over the slices where both are present. Correct
      masks score near 0 % (a cup touching the disc's edge, a basal LV slice open to the outflow tract add a few
      percent); a swapped map scores 50-100 %.

    On failure every one-to-one assignment of the stored values to classes (a known map or a permutation) is tried,
    and those passing both rules, with every rule tested, are named in the message.

    Args:
        label_files: label file paths (PNG/JPEG, NIfTI slices or volumes; volumes are checked slice by slice along
            their last axis, as :class:`~monai_ext.data.VolumeSlicer` cuts them).
        label_map: ``{stored value: class}`` or a name in :data:`LABEL_MAPS`.
        task: ``"fundus"`` or ``"cardiac"``.
        map_name: the map's name for the message (taken from ``label_map`` when it is a name).
        max_files: files read at most; ``None`` reads all.
        max_open_border: the nesting rule's limit, a fraction.
        where: what the files are, for the message (e.g. ``"domain 'BinRushed'"``).

    Returns:
        ``{"files", "value_counts", "class_counts", "map", "release", "nesting"}``; ``nesting`` holds, per enclosed
        class, the slices with both classes (0: not tested, the sample lacks one) and the open fraction.

    Raises:
        LabelMapError: a rule fails; the message lists the files, the value counts, the failed rules and the known
            map or class permutation that passes both rules, if there is one.
        KeyError: unknown ``task`` or map name.
        ValueError: no label file is given.

    Example::

        check_label_map(sorted(glob.glob("RIGA/BinRushed/*/mask/*.png")), "ccsdg", task="fundus")
    """
    if task not in LABEL_CLASSES:
        raise KeyError(f"No label classes known for task {task!r}; known: {list(LABEL_CLASSES)}.")
    if isinstance(label_map, str):
        if label_map not in LABEL_MAPS:
            raise KeyError(f"Unknown label map {label_map!r}; known: {list(LABEL_MAPS)}.")
        map_name, label_map = label_map, LABEL_MAPS[label_map]
    if not 0.0 <= max_open_border < 1.0:
        raise ValueError(f"max_open_border must be in [0, 1), got {max_open_border}.")
    classes = LABEL_CLASSES[task]
    label_map = {_number(k): _number(v) for k, v in dict(label_map).items()}
    files = sample_label_files(label_files, max_files)
    if not files:
        raise ValueError(f"No label files to check the label map against{f' ({where})' if where else ''}.")
    loader = CheckedLoadImage(channels=1, mask=True)
    stats = [_file_stats(f, _read(loader, f), label_map, classes, max_open_border) for f in files]

    value_counts: dict[int | float, int] = {}
    top_files: dict[int | float, int] = {}  # value -> files where it is the most frequent
    for s in stats:
        for value, count in s.counts.items():
            value_counts[value] = value_counts.get(value, 0) + count
        top = max(s.counts, key=s.counts.get)
        top_files[top] = top_files.get(top, 0) + 1
    values = sorted(value_counts)
    mapping = {v: label_map.get(v, v) for v in values}
    failures, verdict = [], None
    bad = [v for v in values if not (isinstance(mapping[v], int) and 0 <= mapping[v] < len(classes.names))]
    if bad:
        failures.append(
            f"values: the map leaves {_values_text(bad)} as {', '.join(_fmt(mapping[v]) for v in bad)}, not a class "
            f"of the {task} task (0-{len(classes.names) - 1}: {', '.join(classes.names)})"
        )
    else:
        verdict = _verdict(stats, mapping, classes, checked=True)
        if not verdict.background_ok():
            most = max(value_counts, key=value_counts.get)
            background = [v for v in values if mapping[v] == 0]
            failures.append(
                f"background: the map makes {_values_text(background) if background else 'no value'} background, "
                f"but value {_fmt(most)} (which it makes the {classes.names[mapping[most]]}) is the most frequent "
                f"value, in {top_files.get(most, 0)} of {len(files)} files (background?); the map's background is "
                f"the most frequent class in {verdict.background_files} of {len(files)} files"
            )
        for (inner, outer), nesting in verdict.nesting.items():
            if nesting.open_fraction > max_open_border:
                failures.append(
                    f"nesting: the {classes.names[inner]} ({_values_text([v for v in values if mapping[v] == inner])})"
                    f" should lie inside the {classes.names[outer]} "
                    f"({_values_text([v for v in values if mapping[v] == outer])}), but "
                    f"{100 * nesting.open_fraction:.0f}% of its border is not {classes.names[outer]} (at most "
                    f"{100 * max_open_border:.0f}%), open in {nesting.open_slices} of the {nesting.slices} slices "
                    "holding both"
                )
    releases = known_label_releases(values, task)
    summary = {
        "files": files,
        "value_counts": {_fmt(v): value_counts[v] for v in values},
        "class_counts": None if verdict is None else dict(zip(classes.names, verdict.class_counts)),
        "map": {_fmt(v): mapping[v] for v in values},
        "release": [description for description, _ in releases],
        "nesting": (
            {}
            if verdict is None
            else {
                f"{classes.names[i]} in {classes.names[o]}": {"slices": n.slices, "open_fraction": n.open_fraction}
                for (i, o), n in verdict.nesting.items()
            }
        ),
    }
    if not failures:
        return summary
    if map_name is None:
        map_name = _known_map_names(values, task).get(tuple(sorted(mapping.items())))
    name = f"'{map_name}'" if map_name else "{" + ", ".join(f"{_fmt(k)}: {_fmt(v)}" for k, v in label_map.items()) + "}"
    root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])
    lines = [
        f"Label map {name} contradicts the {task} label files{f' of {where}' if where else ''}.",
        f"Files checked ({len(files)}, under {root}): {', '.join(os.path.relpath(f, root) for f in files)}.",
        f"Pixels per value: {', '.join(f'{_fmt(v)}: {value_counts[v]:,}' for v in values)}.",
        *[f"- {failure}" for failure in failures],
        *[f"The values {{{', '.join(map(_fmt, values))}}} are those of {d}." for d, _ in releases],
    ]
    lines += _suggestions(stats, values, task, max_open_border)
    lines.append("To train anyway, switch this check off (check_label_map=False; --check_label_map False).")
    raise LabelMapError("\n".join(lines))


def _suggestions(stats: Sequence[_FileStats], values: Sequence[int | float], task: str, limit: float) -> list[str]:
    """Lines naming the known maps and class permutations that pass both rules, every rule tested."""
    classes = LABEL_CLASSES[task]
    passing = []
    for mapping in _permutations(values, classes):
        verdict = _verdict(stats, mapping, classes)
        if verdict.fully_tested() and verdict.background_ok() and verdict.nesting_ok(limit):
            passing.append(mapping)
    if not passing:
        return ["No known map and no permutation of the classes passes both rules: check the masks' format."]
    names = _known_map_names(values, task)
    lines = []
    for mapping in passing[:3]:
        changed = [v for v in values if mapping[v] != v]
        config = f"label_orig_values={changed}, label_target_values={[mapping[v] for v in changed]}"
        name = names.get(tuple(sorted(mapping.items())))
        if name:
            lines.append(
                f"The map '{name}' ({LABEL_MAP_DESCRIPTIONS[name]}) passes both checks: --label_map {name} ({config})."
            )
        else:
            described = ", ".join(
                f"{_fmt(v)} {classes.names[c]}" for v, c in sorted(mapping.items(), key=lambda i: i[1])
            )
            lines.append(f"The class permutation {described} passes both checks: {config}.")
    return lines

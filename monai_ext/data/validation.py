"""Dataset validation results: every problem found in a dataset, grouped by category, reported at once.

Readers such as :func:`monai_ext.data.load_lvit_split` and :func:`monai_ext.data.load_text_datalist` check a whole
dataset before returning anything and collect what is wrong into a :class:`ValidationReport`, so that one run shows
every broken file instead of failing on the first one in the middle of training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PROBLEM_DESCRIPTIONS", "ValidationReport", "DatasetValidationError", "check_loadable", "transform_error"]

# category -> what the listed entries have in common (shown in ValidationReport.format()).
PROBLEM_DESCRIPTIONS = {
    "missing_folder": "folder(s) missing",
    "missing_table": "no text table found (paths tried)",
    "unreadable_table": "text table cannot be read",
    "missing_columns": "text table lacks required column(s)",
    "image_without_mask": "image(s) without a mask",
    "mask_without_image": "mask(s) without an image",
    "mask_without_text": "mask(s) without a row in the text table",
    "text_without_files": "text row(s) naming a mask that does not exist",
    "conflicting_duplicates": "mask(s) listed more than once with different descriptions",
    "empty_description": "row(s) with an empty or whitespace-only description",
    "path_outside_root": "path(s) escaping the dataset root",
    "invalid_item": "datalist item(s) that are not objects with an 'image' entry",
    "invalid_path": "datalist path(s) that are not strings",
    "invalid_text": "text that is not a non-empty string or a non-empty list of non-empty strings",
    "missing_file": "file(s) that do not exist",
    "unloadable_item": "item(s) whose image or mask fails the training pipeline's loading checks",
    "split_size": "split whose size differs from the benchmark protocol's (is it the published split?)",
}

# Problems that skipping cannot help (no usable record at all, or not the split a benchmark protocol needs): raised
# even with on_error="skip".
FATAL_PROBLEMS = frozenset({"missing_folder", "missing_table", "unreadable_table", "missing_columns", "split_size"})


@dataclass
class ValidationReport:
    """Result of validating a dataset (one LViT split or one datalist key).

    Attributes:
        source: what was validated, e.g. ``"/data/QaTa-COV19 [Train]"``.
        records: the records that passed every check (what a loader returns with ``on_error="skip"``).
        problems: category (a key of :data:`PROBLEM_DESCRIPTIONS`) -> sorted offending names or messages.
        warnings: tolerated oddities, e.g. identical duplicate rows that were collapsed.

    Example::

        report = validate_lvit_split("/data/QaTa-COV19", "Train")
        if not report.ok:
            print(report.format())
    """

    source: str
    records: list[dict] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def add(self, category: str, item: str) -> None:
        """Record one offending ``item`` (a file name or a short message) under ``category``."""
        if category not in PROBLEM_DESCRIPTIONS:
            raise KeyError(f"Unknown problem category '{category}'; known: {sorted(PROBLEM_DESCRIPTIONS)}.")
        entries = self.problems.setdefault(category, [])
        if item not in entries:
            entries.append(item)

    @property
    def ok(self) -> bool:
        """True when no problem was found (warnings do not count)."""
        return not self.problems

    @property
    def fatal(self) -> bool:
        """True when a problem makes the whole dataset unusable (missing folder/table/columns)."""
        return any(category in FATAL_PROBLEMS for category in self.problems)

    @property
    def num_problems(self) -> int:
        return sum(len(items) for items in self.problems.values())

    def format(self, max_items: int = 20) -> str:
        """Human-readable summary: one block per category listing up to ``max_items`` offending entries."""
        lines = [f"{self.source}: {len(self.records)} valid record(s), {self.num_problems} problem(s)."]
        for category in PROBLEM_DESCRIPTIONS:
            items = self.problems.get(category)
            if not items:
                continue
            lines.append(f"  {PROBLEM_DESCRIPTIONS[category]} [{category}] ({len(items)}):")
            lines.extend(f"    - {item}" for item in sorted(items)[:max_items])
            if len(items) > max_items:
                lines.append(f"    ... and {len(items) - max_items} more")
        if self.warnings:
            lines.append(f"  warnings ({len(self.warnings)}):")
            lines.extend(f"    - {warning}" for warning in self.warnings[:max_items])
            if len(self.warnings) > max_items:
                lines.append(f"    ... and {len(self.warnings) - max_items} more")
        return "\n".join(lines)


class DatasetValidationError(ValueError):
    """A dataset has problems; ``.report`` holds all of them (:class:`ValidationReport`), the message lists them."""

    def __init__(self, report: ValidationReport):
        self.report = report
        super().__init__(report.format())


def transform_error(error: BaseException) -> BaseException:
    """The error a transform raised, without MONAI Compose's ``RuntimeError("applying transform ...")`` wrappers."""
    while isinstance(error, RuntimeError) and error.__cause__ is not None and "applying transform" in str(error):
        error = error.__cause__
    return error


def check_loadable(
    report: ValidationReport, load: Callable[[dict], Any], progress: bool = True, description: str = "checking files"
) -> ValidationReport:
    """Run ``load`` on every record of ``report``; records that raise are removed and reported as ``unloadable_item``
    with the error's message (the loaders of this package name the file and the problem there).

    Reading every file finds truncated images, masks of another size, colour masks and non-binary masks before
    training starts instead of in its middle.

    Args:
        report: a report whose ``records`` passed the table and file checks; changed in place and returned.
        load: the loading transforms of the training pipeline, e.g. ``Compose([CheckedLoadImaged(...),
            BinarizeMaskd(...)])``.
        progress: show a progress bar (tqdm) on long checks.
        description: the progress bar's label.
    """
    from tqdm import tqdm

    kept = []
    for record in tqdm(report.records, desc=description, disable=not progress, leave=False):
        try:
            load(dict(record))
        except Exception as error:  # any loader failure is the record's problem, reported with its message
            error = transform_error(error)
            report.add(
                "unloadable_item", f"{record.get('name') or record.get('image')}: {type(error).__name__}: {error}"
            )
        else:
            kept.append(record)
    report.records = kept
    return report

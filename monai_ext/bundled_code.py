"""Which copy of the package a bundle runs with: an archive's own (``<bundle>/scripts``) or one installed elsewhere.

Model Zoo archives vendor the code their configs import; every archive config's ``initialize`` calls
:func:`check_bundled_code` first (lowest layer: it imports nothing of monai_ext, so an archive can always carry it).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

__all__ = ["check_bundled_code"]

logger = logging.getLogger(__name__)


def check_bundled_code(bundle_root: str, packages: Sequence[str] = ("monai_ext",)) -> list[str]:
    """Log a warning for each of ``packages`` that was imported from somewhere other than ``<bundle_root>/scripts``.

    An archive's configs call this first in ``initialize``: ``"$import scripts"`` (which puts the bundled copy first on
    ``sys.path``) only works when the bundle runs from its own folder, and MONAI skips a failed config import without
    a word, so a run started elsewhere would silently use an installed copy instead.

    Returns:
        the warnings (empty when the bundled code is in use).
    """
    scripts = os.path.join(os.path.abspath(bundle_root), "scripts")
    warnings = []
    for name in packages:
        module = sys.modules.get(name)
        source = os.path.abspath(getattr(module, "__file__", None) or "") if module is not None else ""
        if module is not None and not source.startswith(scripts + os.sep):
            warnings.append(
                f"'{name}' comes from {source}, not from this bundle's copy in {scripts}: run the bundle from its "
                f"folder (cd {os.path.abspath(bundle_root)}) or put {scripts} first on PYTHONPATH to use its own code."
            )
    for message in warnings:
        logger.warning(message)
    return warnings

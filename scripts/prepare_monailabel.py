"""Copy a bundle into a MONAI Label app (``<app_dir>/model/<name>``), with weights and overrides; a new app folder
also gets the app itself (``main.py``, :data:`monai_ext.bundle.monailabel.APP_MAIN`).

Usage (from the repository root)::

    python scripts/prepare_monailabel.py prepare --bundle_dir bundles/tgcnet --app_dir apps/textseg \
        --checkpoint demo_output/models/model.pt
    monailabel start_server --app apps/textseg --studies /data/images --conf models tgcnet

See :func:`monai_ext.bundle.monailabel.prepare_app_bundle` for the arguments; ``--help`` lists them.
"""

from __future__ import annotations

import os
import sys

import fire

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from monai_ext.bundle.monailabel import prepare_app_bundle  # noqa: E402
from monai_ext.flags import checked_flags  # noqa: E402

if __name__ == "__main__":
    fire.Fire({"prepare": checked_flags(prepare_app_bundle)})

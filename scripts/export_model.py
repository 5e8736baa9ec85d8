"""Export a bundle's trained network to TorchScript and/or ONNX (image + tokenized report inputs).

Usage (from the repository root)::

    python scripts/export_model.py --bundle_dir bundles/tgcnet --checkpoint bundles/tgcnet/models/model.pt \
        --output_dir exported --formats "['torchscript','onnx']"
    # demo weights trained with the tiny CLIP: add its config
    python scripts/export_model.py --bundle_dir bundles/tgcnet --checkpoint demo_output/models/model.pt \
        --config_files "['configs/demo_inference.json']" --output_dir exported

Each export is run on an example (a random image and ``--text``, default the bundle's ``default_prompt``, turned
into tokens by the bundle's own text transforms) and compared with PyTorch; a difference above ``--atol`` fails.
Inputs, in order: ``image [1, C, H, W]`` float, then the bundle's extra inputs (TGC-Net: ``text_tokens [1, 77]``,
``knowledge_tokens [1, K, 77]``, int64). The batch dimension is free (also checked with a batch of 2), the other
dimensions are fixed (traced); the text is free.
"""

from __future__ import annotations

import os
import sys

import fire

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from monai_ext.bundle.export import export_bundle_model  # noqa: E402
from monai_ext.flags import checked_flags  # noqa: E402

if __name__ == "__main__":
    # Prints the written files, input shapes and the largest difference from PyTorch.
    fire.Fire(checked_flags(export_bundle_model))

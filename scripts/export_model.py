"""Export a bundle's trained network to TorchScript and/or ONNX (image + tokenized report inputs).

Usage (from the repository root)::

    python scripts/export_model.py --bundle_dir bundles/tgcnet --checkpoint bundles/tgcnet/models/model.pt \
        --output_dir exported --formats "['torchscript','onnx']"
    # demo weights trained with the tiny CLIP: add its config
    python scripts/export_model.py --bundle_dir bundles/tgcnet --checkpoint demo_output/models/model.pt \
        --configs "['configs/demo_inference.json']" --output_dir exported

Each export is run on an example (a random image and ``--text``, default the bundle's ``default_prompt``, turned
into tokens by the bundle's own text transforms) and compared with PyTorch; a difference above ``--atol`` fails.
Inputs, in order: ``image [1, C, H, W]`` float, then the bundle's extra inputs (TGC-Net: ``text_tokens [1, 77]``,
``knowledge_tokens [1, K, 77]``, int64). Shapes are fixed (traced); the text is free.
"""

from __future__ import annotations

import json
import os
import sys

import fire

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from monai_ext.utils.export import export_bundle_model  # noqa: E402


def main(
    bundle_dir: str = "bundles/tgcnet",
    output_dir: str = "exported",
    checkpoint: str | None = None,
    formats: str | list[str] = ("torchscript", "onnx"),
    configs: str | list[str] | None = None,
    overrides: dict | None = None,
    text: str | None = None,
    opset_version: int = 17,
    check: bool = True,
    atol: float = 1e-4,
    overwrite: bool = False,
    name: str = "model",
) -> None:
    """Export; prints the written files, input shapes and the max difference from PyTorch as JSON."""
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    result = export_bundle_model(
        bundle_dir,
        output_dir,
        formats=list(formats),
        checkpoint=checkpoint,
        config_files=configs,
        overrides=overrides,
        text=text,
        opset_version=opset_version,
        check=check,
        atol=atol,
        overwrite=overwrite,
        name=name,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    fire.Fire(main)

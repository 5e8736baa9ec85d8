"""Trainable and total parameters of TGC-Net, VLSA-Net, their ablations and the image-only baseline.

Writes ``parameters.json`` and ``parameters.md`` to ``output_dir``::

    python scripts/benchmark_parameters.py --output_dir benchmark_results/parameters

Networks are built with random CLIP weights (counts do not depend on them), so nothing is downloaded.
"""

from __future__ import annotations

import os
import sys
import time

import fire

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from monai.networks.nets import BasicUNet  # noqa: E402
from monai_ext.flags import checked_flags  # noqa: E402
from monai_ext.io import atomic_write_json, atomic_write_text  # noqa: E402
from monai_ext.networks import TGCNet, VLSANet, count_parameters  # noqa: E402

FUNDUS_PROMPTS = os.path.join(REPO_ROOT, "bundles", "vlsanet", "configs", "prompts_fundus.json")


def variants(clip_model_name: str) -> dict:
    """name -> zero-argument constructor."""
    tgc = {"clip_model_name": clip_model_name, "in_channels": 1}
    vlsa = {"clip_model_name": clip_model_name, "class_prompts": FUNDUS_PROMPTS}
    return {
        "TGC-Net": lambda: TGCNet(**tgc),
        "TGC-Net, no CNN branch": lambda: TGCNet(**tgc, use_cnn_branch=False),
        "TGC-Net, no knowledge": lambda: TGCNet(**tgc, use_knowledge=False),
        "TGC-Net, no VLCM": lambda: TGCNet(**tgc, use_vlcm=False),
        "VLSA-Net (CLIP frozen)": lambda: VLSANet(**vlsa),
        "VLSA-Net, last 2 ViT blocks tuned": lambda: VLSANet(**vlsa, freeze_clip="partial", tune_last_blocks=2),
        "VLSA-Net, no EM": lambda: VLSANet(**vlsa, use_em=False),
        "VLSA-Net, no text": lambda: VLSANet(**vlsa, use_text=False),
        "BasicUNet (image-only baseline)": lambda: BasicUNet(spatial_dims=2, in_channels=1, out_channels=1),
    }


def main(output_dir: str = "benchmark_results/parameters", clip_model_name: str = "ViT-B-16") -> str:
    """Count parameters of every variant; returns the path of ``parameters.md``."""
    rows = []
    for name, build in variants(clip_model_name).items():
        counts = count_parameters(build())
        rows.append({"network": name, **counts, "trainable_fraction": counts["trainable"] / counts["total"]})
        print(f"{name}: {counts['trainable']:,} trainable / {counts['total']:,} total", flush=True)
    lines = [
        "# Parameters",
        "",
        f"CLIP {clip_model_name}; {time.strftime('%Y-%m-%d')}. Command: `python scripts/benchmark_parameters.py`.",
        "",
        "| network | trainable | total | trainable share |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['network']} | {r['trainable'] / 1e6:.2f}M | {r['total'] / 1e6:.1f}M | "
        f"{100 * r['trainable_fraction']:.1f}% |"
        for r in rows
    ]
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_json(
        os.path.join(output_dir, "parameters.json"), {"clip_model_name": clip_model_name, "rows": rows}, overwrite=True
    )
    path = os.path.join(output_dir, "parameters.md")
    atomic_write_text(path, "\n".join(lines) + "\n", overwrite=True)
    print("\n".join(lines))
    return path


if __name__ == "__main__":
    fire.Fire(checked_flags(main))

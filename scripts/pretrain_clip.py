"""Pretrain the tiny CLIP contrastively on the synthetic caption corpus (demo task v2) and write fp16 safetensors.

Writes the corpus first when ``corpus_dir`` holds none (``monai_ext.demo.make_caption_corpus``: v2 chest X-rays,
fundus ``domain_a`` and cardiac ``bssfp`` only, disjoint from every evaluation image), then runs
``monai_ext.apps.clip_pretraining.pretrain_clip``. Outputs in ``output_dir``: ``<name>.safetensors`` (float16),
``<name>.safetensors.sha256`` and ``<name>.json`` (this command, the configuration, timing, loss history and the
held-out metrics: image-to-text and text-to-image recall@1, the knowledge probe, VLSA-Net class-prompt separation).
Deterministic for a given seed and thread count. The weights load through the bundles' ``clip_checkpoint``::

    python scripts/pretrain_clip.py --output_dir weights
    python -m monai.bundle run --config_file "['configs/train.json','configs/demo.json']" \
        --clip_checkpoint weights/tiny_clip_aligned.safetensors

A short check of the set-up and its speed: ``--max_steps 20 --output_dir /tmp/clip_check``.
"""

from __future__ import annotations

import json
import os
import sys

import fire

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from monai_ext.apps.clip_pretraining import pretrain_clip  # noqa: E402
from monai_ext.demo import MARKER_FILE, make_caption_corpus  # noqa: E402
from monai_ext.flags import checked_flags  # noqa: E402

KNOWLEDGE_V2 = os.path.join(REPO_ROOT, "bundles", "tgcnet", "configs", "medical_knowledge_v2.json")
VLSANET_PROMPTS = tuple(
    os.path.join(REPO_ROOT, "bundles", "vlsanet", "configs", f"prompts_{task}.json") for task in ("fundus", "cardiac")
)
DEFAULT_COUNTS = {"chest": 5000, "fundus": 1500, "cardiac": 1500}


def _corpus(corpus_dir: str, counts: dict, held_out: int, image_size: int, seed: int) -> None:
    """Write the corpus, or check that the one in ``corpus_dir`` was made with these settings."""
    marker = os.path.join(corpus_dir, MARKER_FILE)
    if not os.path.isfile(marker):
        make_caption_corpus(corpus_dir, counts=counts, held_out=held_out, image_size=image_size, seed=seed)
        return
    with open(marker, encoding="utf-8") as f:
        made = json.load(f)
    wanted = {"training": counts, "held_out": dict.fromkeys(counts, held_out)}
    settings = {"image_size": image_size, "seed": seed}
    if made.get("counts") != wanted or {k: made["parameters"].get(k) for k in settings} != settings:
        raise ValueError(
            f"{corpus_dir} holds a corpus made with counts {made.get('counts')} and parameters "
            f"{made.get('parameters')}, not {wanted} / {settings}; choose another --corpus_dir."
        )


def main(
    corpus_dir: str = "data/clip_corpus",
    output_dir: str = "weights",
    name: str = "tiny_clip_aligned",
    counts: dict | None = None,
    held_out: int = 200,
    image_size: int = 128,
    corpus_seed: int = 0,
    seed: int = 0,
    epochs: int = 16,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.1,
    warmup_steps: int = 100,
    max_steps: int | None = None,
    threads: int | None = 2,
    log_every: int = 50,
    eval_every_epochs: int = 0,
    knowledge_file: str = KNOWLEDGE_V2,
    prompt_files=VLSANET_PROMPTS,
    overwrite: bool = False,
) -> str:
    """Write the corpus if needed, pretrain, and return the path of the weights (see the module docstring)."""
    counts = dict(counts or DEFAULT_COUNTS)
    _corpus(os.path.abspath(corpus_dir), counts, held_out, image_size, corpus_seed)
    record = pretrain_clip(
        corpus_dir,
        output_dir,
        name=name,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        warmup_steps=warmup_steps,
        seed=seed,
        max_steps=max_steps,
        threads=threads,
        log_every=log_every,
        eval_every_epochs=eval_every_epochs,
        knowledge_file=knowledge_file,
        prompt_files=list(prompt_files),
        command="python " + " ".join([os.path.relpath(sys.argv[0], REPO_ROOT), *sys.argv[1:]]),
        overwrite=overwrite,
    )
    metrics = record["metrics"]["all"]
    print(
        f"Wrote {record['weights']} (sha256 {record['sha256']}); held-out recall@1 image-to-text "
        f"{metrics['i2t_content']:.3f}, text-to-image {metrics['t2i_content']:.3f} "
        f"(content; chance {metrics['chance_content']:.3f}); {record['timing']['pairs_per_second']:.0f} pairs/s"
    )
    return record["weights"]


if __name__ == "__main__":
    fire.Fire(checked_flags(main))

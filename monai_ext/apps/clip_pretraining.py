"""Contrastive pretraining of a small CLIP on a synthetic image-caption corpus (demo task v2), deterministic on a CPU.

The demo's TGC-Net and VLSA-Net freeze a CLIP whose image and text spaces are assumed to be aligned; with random tiny
weights they are not. :func:`pretrain_clip` aligns the tiny configuration on the corpus written by
:func:`monai_ext.demo.make_caption_corpus` (v2 chest X-rays, fundus and cardiac source domains; plain visual captions)
and writes weights that load through ``create_clip(..., checkpoint=path)``, i.e. the bundles' ``clip_checkpoint``.

What it does, as open_clip trains CLIP: symmetric InfoNCE over the batch with the learnable temperature
(``logit_scale``, initialised to log(1/0.07), clamped to log(100)), AdamW (betas 0.9/0.98, eps 1e-6, no weight decay
on gains, biases and the temperature) with linear warm-up and cosine decay. Two differences, both for this corpus:

* pairs in a batch that show the same content (e.g. two fundus views with the disc on the left and a small cup) are
  all positives of each other, with equal weight (a soft target); with distinct contents this is exactly CLIP's loss;
* captions are encoded at the batch's real length (up to its longest end-of-text token) instead of the full 77-token
  context: the text tower is causal and pools at the end-of-text token, so the result is the same (checked in the
  tests) for a fraction of the cost.

Images are encoded by :class:`monai_ext.networks.blocks.ClipImageEncoder`, the module the networks use: same
normalisation and the same interpolation of the positional embedding to the demo's 128-pixel grid. Determinism: the
initial weights come from ``torch.manual_seed(seed)``, each epoch's batch order and caption choice from ``seed`` and
the epoch; with the same thread count the same run gives the same weights.

Outputs, in ``output_dir``::

    <name>.safetensors          the CLIP state dict in float16
    <name>.safetensors.sha256   its SHA-256 in ``sha256sum`` format (``sha256sum -c`` checks it)
    <name>.json                 the command, the configuration, the corpus, the timing, the loss history and the
                                held-out metrics (retrieval recall@1, knowledge probe, class-prompt separation)
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from monai_ext.clip import TINY_CLIP_NAME, create_clip, get_clip_tokenizer
from monai_ext.demo import LESION_KINDS, sample_rng
from monai_ext.io import atomic_write, atomic_write_json, atomic_write_text, sha256_file
from monai_ext.networks import load_class_prompts
from monai_ext.networks.blocks import ClipImageEncoder
from monai_ext.text import MedicalKnowledgeBase
from open_clip.transformer import text_global_pool
from PIL import Image

__all__ = [
    "CaptionPairs",
    "load_caption_pairs",
    "encode_captions",
    "contrastive_loss",
    "retrieval_recall",
    "knowledge_probe",
    "prompt_separation",
    "pretrain_clip",
]

# open_clip's initial temperature and its clamp.
_INITIAL_LOGIT_SCALE = math.log(1 / 0.07)
_MAX_LOGIT_SCALE = math.log(100)


@dataclass
class CaptionPairs:
    """Images, tokenised captions and content ids of one part of a caption corpus, held in memory.

    Attributes:
        images: one uint8 tensor ``[C, H, W]`` per pair (C 1 or 3).
        tokens: LongTensor ``[N, P, context_length]``, ``P`` phrasings per image.
        content: LongTensor ``[N]``: pairs with equal ids show the same content.
        sources: corpus source of each pair (``"chest"``, ``"fundus"``, ``"cardiac"``).
        findings: each pair's ``findings`` entry (chest) or None.
    """

    images: list[torch.Tensor]
    tokens: torch.Tensor
    content: torch.Tensor
    sources: list[str]
    findings: list[list[dict] | None]

    def __len__(self) -> int:
        return len(self.images)

    def image_batch(self, indices: Sequence[int]) -> torch.Tensor:
        """Float images ``[B, 3, H, W]`` in [0, 1] (grayscale repeated to RGB, as the networks feed CLIP)."""
        return torch.stack([self.images[int(i)].expand(3, -1, -1) for i in indices]).float() / 255.0


def load_caption_pairs(
    corpus_dir: str | os.PathLike, part: str, model_name: str = TINY_CLIP_NAME, content_ids: dict | None = None
) -> CaptionPairs:
    """Read one part (``"training"`` or ``"held_out"``) of a :func:`monai_ext.demo.make_caption_corpus` folder.

    Args:
        content_ids: content key -> id, extended in place with unseen keys (share it between parts).
    """
    corpus_dir = os.fspath(corpus_dir)
    with open(os.path.join(corpus_dir, "corpus.json"), encoding="utf-8") as f:
        items = json.load(f)[part]
    if not items:
        raise ValueError(f"The {part!r} part of the corpus in {corpus_dir} is empty.")
    tokenizer = get_clip_tokenizer(model_name)
    content_ids = {} if content_ids is None else content_ids
    images, tokens = [], []
    for item in items:
        array = np.array(Image.open(os.path.join(corpus_dir, item["image"])))
        images.append(
            torch.from_numpy(array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1)))
        )
        tokens.append(tokenizer(item["captions"]).long())
        content_ids.setdefault(item["content"], len(content_ids))
    return CaptionPairs(
        images,
        torch.stack(tokens),
        torch.tensor([content_ids[item["content"]] for item in items]),
        [item["source"] for item in items],
        [item.get("findings") for item in items],
    )


def encode_captions(clip_model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """CLIP text embeddings ``[B, embed_dim]`` (unnormalised) of ``tokens`` ``[B, context_length]``.

    Equal to open_clip's ``encode_text`` for its causal text towers with end-of-text pooling, but computed over the
    batch's real length only: positions after the last end-of-text token cannot reach the pooled token.
    """
    tower = getattr(clip_model, "text", clip_model)
    pool_type = getattr(tower, "text_pool_type", getattr(tower, "pool_type", None))
    if pool_type != "argmax" or tower.attn_mask is None:
        raise TypeError(f"encode_captions needs a causal CLIP text tower pooled at end-of-text, got {pool_type!r}.")
    length = int(tokens.argmax(dim=-1).max()) + 1  # the end-of-text token has the highest id
    tokens = tokens[:, :length]
    cast_dtype = tower.transformer.get_cast_dtype()
    x = tower.token_embedding(tokens).to(cast_dtype) + tower.positional_embedding[:length].to(cast_dtype)
    x = tower.ln_final(tower.transformer(x, attn_mask=tower.attn_mask[:length, :length]))
    pooled = text_global_pool(x, tokens, "argmax")
    projection = tower.text_projection
    return projection(pooled) if isinstance(projection, torch.nn.Module) else pooled @ projection


def contrastive_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    content: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE of L2-normalised features ``[B, D]`` with temperature ``logit_scale.exp()``.

    ``content`` ``[B]`` (optional): pairs with equal ids are positives of each other, with equal weight. Without it,
    or when all ids differ, this is CLIP's loss (cross-entropy towards the diagonal, both directions).
    """
    logits = logit_scale.exp() * image_features @ text_features.T
    if content is None:
        content = torch.arange(logits.shape[0], device=logits.device)
    same = (content[:, None] == content[None, :]).to(logits.dtype)
    targets = same / same.sum(dim=1, keepdim=True)  # symmetric: rows and columns alike
    image_to_text = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    text_to_image = -(targets * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return (image_to_text + text_to_image) / 2


def retrieval_recall(image_features: torch.Tensor, text_features: torch.Tensor, content: torch.Tensor) -> dict:
    """Recall@1 image-to-text and text-to-image among ``N`` held-out pairs (normalised features ``[N, D]``).

    ``*_exact``: the top match is the pair's own caption / image. ``*_content``: it shows the same content (several
    pairs can share a description, e.g. two clear chest X-rays). ``chance_content``: the content recall of a random
    ranking.
    """
    similarity = image_features @ text_features.T
    own = torch.arange(similarity.shape[0])
    best_text, best_image = similarity.argmax(dim=1), similarity.argmax(dim=0)
    same = content[:, None] == content[None, :]
    return {
        "i2t_exact": float((best_text == own).float().mean()),
        "t2i_exact": float((best_image == own).float().mean()),
        "i2t_content": float((content[best_text] == content).float().mean()),
        "t2i_content": float((content[best_image] == content).float().mean()),
        "chance_content": float(same.float().mean()),
        "pairs": int(similarity.shape[0]),
    }


@torch.no_grad()
def _embed_texts(clip_model: torch.nn.Module, texts: Sequence[str], model_name: str) -> torch.Tensor:
    return F.normalize(encode_captions(clip_model, get_clip_tokenizer(model_name)(list(texts)).long()), dim=-1)


@torch.no_grad()
def _embed_images(encoder: ClipImageEncoder, pairs: CaptionPairs, indices: Sequence[int], batch: int = 128):
    chunks = [encoder(pairs.image_batch(indices[i : i + batch]))[1] for i in range(0, len(indices), batch)]
    return F.normalize(torch.cat(chunks), dim=-1)


def knowledge_probe(
    clip_model: torch.nn.Module,
    encoder: ClipImageEncoder,
    pairs: CaptionPairs,
    knowledge: MedicalKnowledgeBase,
    model_name: str = TINY_CLIP_NAME,
) -> dict:
    """Zero-shot lesion-kind accuracy on the held-out chest images with exactly one lesion, querying each kind by
    (a) its clinical term alone, (b) its knowledge sentence (``term: definition visual``) and (c) the visual
    description alone. The premise of the knowledge bridge: (a) near chance (1/3), (b) and (c) well above it."""
    single = [i for i, findings in enumerate(pairs.findings) if findings is not None and len(findings) == 1]
    if not single:
        return {"images": 0}
    truth = torch.tensor([LESION_KINDS.index(pairs.findings[i][0]["kind"]) for i in single])
    images = _embed_images(encoder, pairs, single)
    queries = {
        "term": list(LESION_KINDS),
        "knowledge_sentence": [knowledge.sentence(kind) for kind in LESION_KINDS],
        "visual_description": [knowledge.terms[kind]["visual"] for kind in LESION_KINDS],
    }
    result = {"images": len(single), "chance": 1.0 / len(LESION_KINDS)}
    for name, texts in queries.items():
        predicted = (images @ _embed_texts(clip_model, texts, model_name).T).argmax(dim=1)
        result[f"accuracy_{name}"] = float((predicted == truth).float().mean())
    return result


def prompt_separation(clip_model: torch.nn.Module, prompt_file: str, model_name: str = TINY_CLIP_NAME) -> dict:
    """Cosine similarities between VLSA-Net's class embeddings (class name plus its prompts, normalised embeddings
    summed and normalised, as :class:`monai_ext.networks.VLSANet` builds them): lower = better told apart."""
    prompts = load_class_prompts(prompt_file)
    classes = [
        F.normalize(_embed_texts(clip_model, [name, *sentences], model_name).sum(0), dim=0)
        for name, sentences in prompts.items()
    ]
    cosine = torch.stack(classes) @ torch.stack(classes).T
    off_diagonal = cosine[~torch.eye(len(classes), dtype=torch.bool)]
    return {
        "classes": list(prompts),
        "cosine": [[round(float(v), 4) for v in row] for row in cosine],
        "max_off_diagonal": float(off_diagonal.max()),
        "mean_off_diagonal": float(off_diagonal.mean()),
    }


def _parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """open_clip's split: no weight decay on gains, biases, norms and the temperature."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        exclude = parameter.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if exclude else decay).append(parameter)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def _learning_rate(step: int, base: float, warmup: int, total: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1 + math.cos(math.pi * progress))


def _evaluate(clip_model, encoder, pairs: CaptionPairs, model_name: str, knowledge, prompt_files) -> dict:
    was_training = clip_model.training
    clip_model.eval()
    indices = list(range(len(pairs)))
    images = _embed_images(encoder, pairs, indices)
    with torch.no_grad():
        chunks = [encode_captions(clip_model, pairs.tokens[i : i + 256, 0]) for i in range(0, len(pairs), 256)]
        texts = F.normalize(torch.cat(chunks), dim=-1)
    metrics = {"all": retrieval_recall(images, texts, pairs.content)}
    for source in dict.fromkeys(pairs.sources):
        keep = torch.tensor([s == source for s in pairs.sources])
        metrics[source] = retrieval_recall(images[keep], texts[keep], pairs.content[keep])
    if knowledge is not None:
        metrics["knowledge_probe"] = knowledge_probe(clip_model, encoder, pairs, knowledge, model_name)
    if prompt_files:
        metrics["prompt_separation"] = {
            os.path.basename(path): prompt_separation(clip_model, path, model_name) for path in prompt_files
        }
    clip_model.train(was_training)
    return metrics


def _save_weights(clip_model: torch.nn.Module, path: str, overwrite: bool) -> str:
    from safetensors.torch import save

    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in clip_model.state_dict().items()}
    with atomic_write(path, mode="wb", overwrite=overwrite) as f:
        # One metadata entry only: safetensors keeps metadata in a hash map, whose order (and so the file's bytes)
        # would change from run to run with several.
        f.write(save(tensors, metadata={"format": "pt"}))
    digest = sha256_file(path)
    atomic_write_text(path + ".sha256", f"{digest}  {os.path.basename(path)}\n", overwrite=overwrite)
    return digest


def pretrain_clip(
    corpus_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    name: str = "tiny_clip_aligned",
    model_name: str = TINY_CLIP_NAME,
    epochs: int = 16,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.1,
    warmup_steps: int = 100,
    seed: int = 0,
    max_steps: int | None = None,
    threads: int | None = None,
    log_every: int = 50,
    eval_every_epochs: int = 0,
    knowledge_file: str | os.PathLike | None = None,
    prompt_files: Sequence[str | os.PathLike] = (),
    command: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Pretrain ``model_name`` contrastively on a caption corpus and write fp16 safetensors (see the module docstring).

    Args:
        corpus_dir: a :func:`monai_ext.demo.make_caption_corpus` folder.
        output_dir: where ``<name>.safetensors``, its ``.sha256`` and ``<name>.json`` go.
        epochs, batch_size: passes over the training pairs and pairs per step (the last incomplete batch is dropped).
        learning_rate, weight_decay, warmup_steps: AdamW with linear warm-up and cosine decay to 0.
        seed: initial weights, batch order and caption choice.
        max_steps: stop after this many steps (the schedule is fitted to them); for tests and timing.
        threads: ``torch.set_num_threads`` (None: torch's default); part of the result's determinism.
        log_every: print the loss every so many steps (0: never).
        eval_every_epochs: also evaluate on the held-out pairs every so many epochs (0: at the end only).
        knowledge_file: knowledge JSON for the knowledge probe (e.g. ``medical_knowledge_v2.json``).
        prompt_files: VLSA-Net class-prompt JSON files whose class separation is measured.
        command: the command line that ran this, recorded in the JSON.
        overwrite: replace existing outputs.

    Returns:
        the JSON record (also written to ``<name>.json``), with ``weights`` and ``sha256``.

    Example::

        make_caption_corpus("data/clip_corpus")
        record = pretrain_clip("data/clip_corpus", "weights", max_steps=10)
        clip = create_clip(TINY_CLIP_NAME, checkpoint=record["weights"])
    """
    output_dir = os.path.abspath(os.fspath(output_dir))
    weights_path = os.path.join(output_dir, f"{name}.safetensors")
    record_path = os.path.join(output_dir, f"{name}.json")
    for path in (weights_path, record_path):
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (a contrastive batch needs negatives), got {batch_size}.")
    if threads is not None:
        torch.set_num_threads(int(threads))
    knowledge = MedicalKnowledgeBase.from_json(knowledge_file) if knowledge_file is not None else None
    if knowledge is not None and set(LESION_KINDS) - set(knowledge.terms):
        raise ValueError(f"{knowledge_file} lacks the lesion kinds {sorted(set(LESION_KINDS) - set(knowledge.terms))}.")
    content_ids: dict[str, int] = {}
    training = load_caption_pairs(corpus_dir, "training", model_name, content_ids)
    held_out = load_caption_pairs(corpus_dir, "held_out", model_name, content_ids)
    steps_per_epoch = len(training) // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"The corpus has {len(training)} training pairs, fewer than one batch of {batch_size}.")
    total_steps = epochs * steps_per_epoch if max_steps is None else min(int(max_steps), epochs * steps_per_epoch)

    torch.manual_seed(seed)
    clip_model = create_clip(model_name)
    with torch.no_grad():
        clip_model.logit_scale.fill_(_INITIAL_LOGIT_SCALE)
    clip_model.train()
    encoder = ClipImageEncoder(clip_model, frozen=False)
    optimizer = torch.optim.AdamW(
        _parameter_groups(clip_model, weight_decay), lr=learning_rate, betas=(0.9, 0.98), eps=1e-6
    )
    history, evaluations = [], []
    step, started, step_seconds = 0, time.perf_counter(), []
    phrasings = training.tokens.shape[1]
    for epoch in range(epochs):
        if step >= total_steps:
            break
        rng = sample_rng(seed, 1, epoch)
        order = rng.permutation(len(training))
        choice = rng.integers(phrasings, size=len(training))
        losses = []
        for batch_index in range(steps_per_epoch):
            if step >= total_steps:
                break
            tick = time.perf_counter()
            indices = order[batch_index * batch_size : (batch_index + 1) * batch_size]
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(step, learning_rate, warmup_steps, total_steps)
            image_features = F.normalize(encoder(training.image_batch(indices))[1], dim=-1)
            rows = torch.from_numpy(indices)
            tokens = training.tokens[rows, torch.from_numpy(choice[indices])]
            text_features = F.normalize(encode_captions(clip_model, tokens), dim=-1)
            loss = contrastive_loss(image_features, text_features, clip_model.logit_scale, training.content[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                clip_model.logit_scale.clamp_(0, _MAX_LOGIT_SCALE)
            losses.append(loss.detach().item())
            step_seconds.append(time.perf_counter() - tick)
            step += 1
            if log_every and step % log_every == 0:
                print(
                    f"step {step}/{total_steps} epoch {epoch + 1} loss {np.mean(losses[-log_every:]):.4f} "
                    f"temperature {clip_model.logit_scale.detach().exp().item():.1f} "
                    f"{batch_size / np.mean(step_seconds[-log_every:]):.0f} pairs/s",
                    flush=True,
                )
        history.append({"epoch": epoch + 1, "steps": len(losses), "mean_loss": float(np.mean(losses))})
        if eval_every_epochs and (epoch + 1) % eval_every_epochs == 0:
            evaluations.append({"epoch": epoch + 1, **_evaluate(clip_model, encoder, held_out, model_name, None, ())})
    train_seconds = time.perf_counter() - started
    metrics = _evaluate(
        clip_model, encoder, held_out, model_name, knowledge, [os.path.abspath(os.fspath(p)) for p in prompt_files]
    )
    os.makedirs(output_dir, exist_ok=True)
    digest = _save_weights(clip_model, weights_path, overwrite)
    corpus_json = os.path.join(os.path.abspath(os.fspath(corpus_dir)), "corpus.json")
    record = {
        "weights": weights_path,
        "sha256": digest,
        "model_name": model_name,
        "dtype": "float16",
        "command": command,
        "config": {
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "weight_decay": weight_decay,
            "warmup_steps": warmup_steps,
            "seed": seed,
            "max_steps": max_steps,
            "threads": torch.get_num_threads(),
            "image_size": int(training.images[0].shape[-1]),
        },
        "corpus": {
            "path": os.path.dirname(corpus_json),
            "corpus_json_sha256": sha256_file(corpus_json),
            "training_pairs": len(training),
            "held_out_pairs": len(held_out),
            "contents": len(content_ids),
        },
        "timing": {
            "steps": step,
            "train_seconds": train_seconds,
            "median_step_seconds": float(np.median(step_seconds)) if step_seconds else None,
            "pairs_per_second": batch_size / float(np.median(step_seconds)) if step_seconds else None,
        },
        "history": history,
        "evaluations": evaluations,
        "metrics": metrics,
        "environment": {
            "torch": torch.__version__,
            "open_clip": open_clip.__version__,
            "machine": platform.processor() or platform.machine(),
            "date": time.strftime("%Y-%m-%d"),
        },
    }
    atomic_write_json(record_path, record, overwrite=overwrite)
    return record

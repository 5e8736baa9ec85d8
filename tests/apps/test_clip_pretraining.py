"""Contrastive pretraining of the tiny CLIP: the loss and the fast text path equal CLIP's, a few steps lower the loss,
and the fp16 weights (with their SHA-256 and record) load through create_clip and the networks' clip_checkpoint."""

import hashlib
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F
from monai_ext.apps.clip_pretraining import (
    contrastive_loss,
    encode_captions,
    load_caption_pairs,
    pretrain_clip,
    prompt_separation,
    retrieval_recall,
)
from monai_ext.clip import ALIGNED_TINY_CLIP_CHECKPOINT, TINY_CLIP_NAME, create_clip, get_clip_tokenizer
from monai_ext.demo import make_caption_corpus
from monai_ext.networks import TGCNet
from monai_ext.networks.blocks import ClipImageEncoder, ClipTextEncoder
from monai_ext.networks.nets.vlsanet import load_class_prompts
from safetensors.torch import load_file

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KNOWLEDGE_V2 = os.path.join(REPO_ROOT, "bundles", "tgcnet", "configs", "medical_knowledge_v2.json")
PROMPTS = os.path.join(REPO_ROOT, "bundles", "vlsanet", "configs", "prompts_fundus.json")
SETTINGS = dict(epochs=4, batch_size=8, learning_rate=2e-3, warmup_steps=2, seed=3, threads=1, log_every=0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("clip") / "corpus"
    make_caption_corpus(out, counts={"chest": 16, "fundus": 8, "cardiac": 8}, held_out=4, image_size=64, seed=1)
    return str(out)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("weights")
    record = pretrain_clip(
        corpus, out, knowledge_file=KNOWLEDGE_V2, prompt_files=[PROMPTS], command="pytest", **SETTINGS
    )
    return out, record


def _training_loss(clip, corpus):
    """Contrastive loss over all training pairs (first phrasing), in eval mode."""
    pairs = load_caption_pairs(corpus, "training")
    encoder = ClipImageEncoder(clip.eval(), frozen=True)
    with torch.no_grad():
        images = F.normalize(encoder(pairs.image_batch(range(len(pairs))))[1], dim=-1)
        texts = F.normalize(encode_captions(clip, pairs.tokens[:, 0]), dim=-1)
        return float(contrastive_loss(images, texts, clip.logit_scale, pairs.content))


def test_captions_at_their_real_length_encode_as_the_full_context():
    torch.manual_seed(0)
    clip = create_clip(TINY_CLIP_NAME)
    tokens = get_clip_tokenizer(TINY_CLIP_NAME)(["a dense white patch in the upper left lung.", "clear lungs."])
    pooled = ClipTextEncoder(clip, frozen=True, cache=False)(tokens)[1]
    with torch.no_grad():
        torch.testing.assert_close(encode_captions(clip, tokens), pooled, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(encode_captions(clip, tokens), clip.encode_text(tokens), atol=1e-5, rtol=1e-5)


def test_loss_is_clips_for_distinct_contents_and_shares_positives_otherwise():
    torch.manual_seed(0)
    images, texts = F.normalize(torch.randn(6, 8), dim=-1), F.normalize(torch.randn(6, 8), dim=-1)
    scale = torch.tensor(math.log(10.0))
    logits = 10.0 * images @ texts.T
    labels = torch.arange(6)
    clip_loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    torch.testing.assert_close(contrastive_loss(images, texts, scale), clip_loss)
    torch.testing.assert_close(contrastive_loss(images, texts, scale, torch.tensor([5, 1, 2, 3, 4, 0])), clip_loss)
    # Two pairs with the same content and identical features: each of the two captions is an equally right answer.
    same = F.normalize(torch.randn(1, 8), dim=-1).expand(2, -1)
    loss = contrastive_loss(same, same, torch.tensor(math.log(100.0)), torch.tensor([7, 7]))
    torch.testing.assert_close(loss, torch.tensor(math.log(2.0)))


def test_recall_counts_exact_and_same_content_matches():
    features = torch.eye(4)
    content = torch.tensor([0, 0, 1, 2])
    recall = retrieval_recall(features, features, content)
    assert recall["i2t_exact"] == recall["t2i_exact"] == recall["i2t_content"] == 1.0
    swapped = retrieval_recall(features, features[[1, 0, 2, 3]], content)
    assert swapped["i2t_exact"] == 0.5 and swapped["i2t_content"] == 1.0
    assert swapped["chance_content"] == pytest.approx(6 / 16)


def test_a_few_steps_lower_the_loss_and_write_loadable_fp16_weights(trained, corpus):
    out, record = trained
    assert record["timing"]["steps"] == SETTINGS["epochs"] * (32 // SETTINGS["batch_size"])
    weights = os.path.join(out, "tiny_clip_aligned.safetensors")
    assert record["weights"] == weights and record["command"] == "pytest"
    assert {t.dtype for t in load_file(weights).values()} == {torch.float16}
    with open(weights, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert record["sha256"] == digest
    with open(weights + ".sha256") as f:
        assert f.read() == f"{digest}  tiny_clip_aligned.safetensors\n"
    with open(os.path.join(out, "tiny_clip_aligned.json")) as f:
        assert json.load(f)["config"] == record["config"]

    torch.manual_seed(SETTINGS["seed"])  # pretrain_clip's starting point
    start = create_clip(TINY_CLIP_NAME)
    with torch.no_grad():
        start.logit_scale.fill_(math.log(1 / 0.07))
    trained_clip = create_clip(TINY_CLIP_NAME, checkpoint=weights)
    assert _training_loss(trained_clip, corpus) < _training_loss(start, corpus) - 0.1

    metrics = record["metrics"]
    assert set(metrics) >= {"all", "chest", "fundus", "cardiac", "knowledge_probe", "prompt_separation"}
    assert metrics["all"]["pairs"] == 12
    assert metrics["prompt_separation"]["prompts_fundus.json"]["classes"] == ["background", "optic disc", "optic cup"]


def test_weights_load_through_clip_checkpoint(trained):
    out, record = trained
    net = TGCNet(clip_model_name=TINY_CLIP_NAME, clip_checkpoint=record["weights"], in_channels=1)
    stored = load_file(record["weights"])
    loaded = net.image_encoder.visual.conv1.weight
    torch.testing.assert_close(loaded, stored["visual.conv1.weight"].float())


def test_same_seed_same_weights(trained, corpus, tmp_path):
    _, record = trained
    again = pretrain_clip(corpus, tmp_path, knowledge_file=KNOWLEDGE_V2, prompt_files=[PROMPTS], **SETTINGS)
    assert again["sha256"] == record["sha256"]
    with pytest.raises(FileExistsError):
        pretrain_clip(corpus, tmp_path, max_steps=1, **{k: v for k, v in SETTINGS.items() if k != "seed"})


@pytest.mark.parametrize("task", ["fundus", "cardiac"])
def test_demo_class_prompts_are_told_apart_by_the_shipped_aligned_clip(task):
    """The demo prompt files name the bundle's classes in the same order, and the shipped aligned tiny CLIP separates
    their class embeddings as their description says (largest cosine below 0.8), unlike the bundle's own prompts."""
    configs = os.path.join(REPO_ROOT, "bundles", "vlsanet", "configs")
    demo_file, bundle_file = (os.path.join(configs, f"prompts_{task}{s}.json") for s in ("_demo", ""))
    assert list(load_class_prompts(demo_file)) == list(load_class_prompts(bundle_file))
    aligned = create_clip(TINY_CLIP_NAME, checkpoint=ALIGNED_TINY_CLIP_CHECKPOINT).eval()
    with torch.no_grad():
        demo, bundle = prompt_separation(aligned, demo_file), prompt_separation(aligned, bundle_file)
    assert demo["max_off_diagonal"] < 0.8 < bundle["max_off_diagonal"]

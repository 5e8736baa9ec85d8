"""VLSA-Net: shapes, training outputs, bundle prompt files, cached class embeddings, overrides, ablations, freezing,
checkpoint."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from monai.data import decollate_batch
from monai.losses import DiceCELoss
from monai_ext.clip import TINY_CLIP_NAME, get_clip_tokenizer
from monai_ext.losses import AuxiliaryOutputLoss, PixelTextAlignmentLoss
from monai_ext.networks.nets.vlsanet import VLSANet, load_class_prompts

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "vlsanet" / "configs"
FUNDUS = CONFIGS / "prompts_fundus.json"
CARDIAC = CONFIGS / "prompts_cardiac.json"
SIZE = 64
PROMPTS = {
    "background": ["outside the organ"],
    "disc": ["a round region", "where vessels enter"],
    "cup": ["inside the disc"],
}


def make_net(**kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("class_prompts", PROMPTS)
    return VLSANet(TINY_CLIP_NAME, num_bases=8, decoder_channels=16, image_size=SIZE, **kwargs).eval()


class CallCounter:
    """Counts the encoding calls of a CLIP text encoder (forwards of its transformer)."""

    def __init__(self, text_encoder):
        self.calls = 0
        text_encoder.transformer.register_forward_hook(self)

    def __call__(self, *_):
        self.calls += 1


def test_bundle_prompt_files():
    fundus, cardiac = load_class_prompts(FUNDUS), load_class_prompts(CARDIAC)
    assert list(fundus) == ["background", "optic disc", "optic cup"]
    assert list(cardiac) == ["background", "left ventricle cavity", "myocardium", "right ventricle"]
    tokenizer = get_clip_tokenizer(TINY_CLIP_NAME)
    for prompts in (*fundus.values(), *cardiac.values()):
        assert 3 <= len(prompts) <= 5
        assert (tokenizer(prompts)[:, -1] == 0).all()  # none cut by the 77-token context


@pytest.mark.parametrize("prompt_file, channels, classes", [(FUNDUS, 3, 3), (CARDIAC, 1, 4)])
def test_output_shape_from_prompt_files(prompt_file, channels, classes):
    net = make_net(class_prompts=prompt_file)
    assert net.num_classes == classes and net.class_names[0] == "background"
    with torch.no_grad():
        assert net(torch.rand(2, channels, SIZE, SIZE)).shape == (2, classes, SIZE, SIZE)
        assert net(torch.rand(1, channels, SIZE + 16, SIZE)).shape == (1, classes, SIZE + 16, SIZE)


def test_class_embeddings_are_normalised_prompt_means_computed_once():
    net = make_net()
    counter = CallCounter(net.text_encoder)
    with torch.no_grad():
        net(torch.rand(1, 3, SIZE, SIZE))
        first = counter.calls
        net(torch.rand(1, 3, SIZE, SIZE))
        embeddings = net.class_embeddings()
    assert first >= 1 and counter.calls == first
    tokenizer = get_clip_tokenizer(TINY_CLIP_NAME)
    for k, (name, sentences) in enumerate(PROMPTS.items()):
        pooled = net.text_encoder(tokenizer([name, *sentences]))[1]
        expected = F.normalize(F.normalize(pooled, dim=-1).mean(0), dim=0)
        torch.testing.assert_close(embeddings[k], expected)
    # Moving/casting the module or loading weights recomputes them.
    counter.calls = 0
    net.float()
    net.class_embeddings()
    assert counter.calls == first
    net.load_state_dict(net.state_dict())
    net.class_embeddings()
    assert counter.calls == 2 * first


def test_text_tokens_override_the_class_prompts():
    net = make_net()
    image = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        default = net(image)
        same = net(image, net.prompt_tokens)
        tokens = get_clip_tokenizer(TINY_CLIP_NAME)(["background", "optic cup", "optic disc"])
        swapped = net(image, tokens)  # [K, L]
        per_image = net(image, torch.stack([net.prompt_tokens, tokens.unsqueeze(1).expand_as(net.prompt_tokens)]))
    torch.testing.assert_close(same, default)
    assert (swapped - default).abs().max() > 1e-4
    torch.testing.assert_close(per_image[0], default[0])
    torch.testing.assert_close(per_image[1], swapped[1])
    with pytest.raises(ValueError, match="K = 3 classes"):
        net(image, tokens[:2])
    with pytest.raises(ValueError, match="at least one prompt"):
        net(image, torch.zeros_like(net.prompt_tokens))


def test_frozen_clip_trains_only_new_parts_and_em_bases_move_in_training():
    net = make_net().train()
    clip_ids = {id(p) for p in (*net.image_encoder.parameters(), *net.text_encoder.parameters())}
    image = torch.rand(2, 1, SIZE, SIZE)
    label = torch.randint(0, 3, (2, 1, SIZE, SIZE))
    bases = net.aggregation.bases.clone()
    loss_fn = AuxiliaryOutputLoss(
        DiceCELoss(to_onehot_y=True, softmax=True),
        PixelTextAlignmentLoss(),
        weight=0.1,
        aux_keys=["pixel_text_similarity"],
    )
    loss_fn(net(image), label).backward()
    assert not torch.allclose(net.aggregation.bases, bases)
    for p in net.parameters():
        if id(p) in clip_ids:
            assert not p.requires_grad and p.grad is None
        else:
            assert p.requires_grad and p.grad is not None
    counts = net.count_parameters()
    assert 0 < counts["trainable"] < counts["total"] / 5

    net.eval()
    bases = net.aggregation.bases.clone()
    with torch.no_grad():
        first, second = net(image), net(image)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(net.aggregation.bases, bases, rtol=0, atol=0)


def test_training_outputs_and_alignment_loss():
    net = make_net()
    image = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        logits = net(image)
        outputs = net.train()(image)
        plain = make_net(return_auxiliary=False).train()(image)
    assert isinstance(logits, torch.Tensor) and isinstance(plain, torch.Tensor)
    assert set(outputs) == {"pred", "pixel_text_similarity", "em_assignments", "em_bases"}
    assert logits.shape == outputs["pred"].shape
    torch.testing.assert_close(plain, outputs["pred"])  # the same first training forward, logits alone
    similarity = outputs["pixel_text_similarity"]
    assert similarity.shape == (2, 3, SIZE // 2, SIZE // 2)  # one cosine per class at the finest decoder level
    assert similarity.abs().max() <= 1 + 1e-6
    items = decollate_batch(outputs, detach=True)  # as MONAI's trainers do before postprocessing
    assert len(items) == 2 and items[1]["pixel_text_similarity"].shape == (3, SIZE // 2, SIZE // 2)
    assert outputs["em_assignments"].shape == (2, (SIZE // 16) ** 2, 8)
    assert outputs["em_bases"].shape == (2, 16, 8)
    # The map is the cosine of the class embeddings the network uses: the classes' text steers it.
    with torch.no_grad():
        other = net(image, get_clip_tokenizer(TINY_CLIP_NAME)(["outside", "the rim", "the middle"]))
    assert (other["pixel_text_similarity"] - similarity).abs().max() > 1e-4
    # A label constant on 2x2 cells: its majority at the 1/2-resolution map is unambiguous.
    label = torch.randint(0, 3, (2, 1, SIZE // 2, SIZE // 2))
    blocky = label.repeat_interleave(2, -1).repeat_interleave(2, -2)
    expected = F.cross_entropy(similarity / 0.07, label[:, 0])
    torch.testing.assert_close(PixelTextAlignmentLoss(temperature=0.07)(similarity, blocky), expected)


def test_ablations():
    no_em = make_net(use_em=False)
    assert isinstance(no_em.aggregation, torch.nn.Identity)
    no_text = make_net(use_text=False).train()
    assert not hasattr(no_text, "text_encoder")
    image = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert no_em(image).shape == (2, 3, SIZE, SIZE)
        assert set(no_em.train()(image)) == {"pred", "pixel_text_similarity"}
    outputs = no_text(image)
    logits = outputs["pred"]
    assert logits.shape == (2, 3, SIZE, SIZE)
    alignment = PixelTextAlignmentLoss()(outputs["pixel_text_similarity"], torch.randint(0, 3, (2, 1, SIZE, SIZE)))
    (logits.mean() + alignment).backward()
    assert no_text.learned_class_embeddings.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="use_text=False"):
        no_text(image, get_clip_tokenizer(TINY_CLIP_NAME)(["a", "b", "c"]))


def test_alignment_term_alone_trains_the_embedding_path():
    net = make_net(use_text=False).train()
    outputs = net(torch.rand(2, 3, SIZE, SIZE))
    label = torch.randint(0, 3, (2, 1, SIZE, SIZE))
    PixelTextAlignmentLoss()(outputs["pixel_text_similarity"], label).backward()
    assert net.learned_class_embeddings.grad.abs().sum() > 0
    before = [*net.stem.parameters(), *net.reassemble.parameters(), *net.decoder.class_projection.parameters()]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in before)
    assert all(p.grad is None for p in (*net.decoder.conv_head.parameters(), net.decoder.logit_scale))  # logits only


def test_partial_and_full_clip_tuning():
    partial = make_net(freeze_clip="partial", tune_last_blocks=1).train()
    blocks = partial.image_encoder.visual.transformer.resblocks
    assert all(p.requires_grad for p in blocks[-1].parameters())
    assert not any(p.requires_grad for p in blocks[0].parameters())
    assert not any(p.requires_grad for p in partial.text_encoder.parameters())
    partial(torch.rand(1, 3, SIZE, SIZE))["pred"].mean().backward()
    assert all(p.grad is not None for p in blocks[-1].parameters())

    full = make_net(freeze_clip=False).train()
    counter = CallCounter(full.text_encoder)
    full(torch.rand(1, 3, SIZE, SIZE))
    logits = full(torch.rand(1, 3, SIZE, SIZE))["pred"]
    assert counter.calls == 2  # a tuned text encoder is re-run every forward
    logits.mean().backward()
    assert full.text_encoder.token_embedding.weight.grad is not None

    with pytest.raises(ValueError, match="tune_last_blocks"):
        make_net(freeze_clip="partial")
    with pytest.raises(ValueError, match=r"tune_last_blocks must be in \[1, 4\]"):
        make_net(freeze_clip="partial", tune_last_blocks=9)
    with pytest.raises(ValueError, match="freeze_clip"):
        make_net(freeze_clip="yes")


def test_checkpoint_round_trip_restores_outputs(tmp_path):
    trained = make_net().train()
    trained(torch.rand(2, 3, SIZE, SIZE))  # moves the EM bases
    trained.eval()
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    restored = make_net()
    restored.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    image = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(restored(image), trained(image))


def test_class_selection_and_prompt_file_errors(tmp_path):
    net = make_net(class_prompts=FUNDUS, class_names=["background", "optic cup"])
    assert net.class_names == ["background", "optic cup"]
    assert net.class_prompts["optic cup"][0] == "optic cup"
    assert make_net(class_prompts=None, class_names=["background", "lesion"]).prompt_tokens.shape[:2] == (2, 1)
    with pytest.raises(ValueError, match="unknown: \\['lens'\\]"):
        make_net(class_prompts=FUNDUS, class_names=["background", "lens"])
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_class_prompts(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json is not valid"):
        load_class_prompts(broken)
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps({"classes": [{"name": "a", "prompts": []}, {"name": "a", "prompts": []}]}))
    with pytest.raises(ValueError, match="twice.json: class 'a' is defined twice"):
        load_class_prompts(twice)
    with pytest.raises(ValueError, match="must be a list of non-empty strings"):
        load_class_prompts({"a": "not a list"})

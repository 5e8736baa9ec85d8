"""TGC-Net network: shapes, training outputs, which parameters train, that the report steers the mask, ablation
switches."""

import pytest
import torch
from monai_ext.clip import TINY_CLIP_NAME
from monai_ext.losses import AuxiliaryOutputLoss, SimilarityMapLoss
from monai_ext.networks.nets.tgcnet import TGCNet

SIZE = 224


def make_net(**kwargs):
    torch.manual_seed(0)
    net = TGCNet(clip_model_name=TINY_CLIP_NAME, **kwargs)
    return net.eval()


def test_output_shape_grayscale_and_rgb(tokenizer):
    net = make_net()
    tokens = tokenizer(["Upper left lung infection.", "Lower right lung infection."])
    with torch.no_grad():
        assert net(torch.rand(2, 1, SIZE, SIZE), tokens).shape == (2, 1, SIZE, SIZE)
        assert net(torch.rand(2, 3, SIZE, SIZE), tokens).shape == (2, 1, SIZE, SIZE)


def test_training_mode_returns_the_similarity_map_with_the_logits(tokenizer):
    net = make_net()
    image = torch.rand(2, 1, SIZE, SIZE)
    tokens = tokenizer(["Upper left lung infection.", "Lower right lung infection."])
    with torch.no_grad():
        logits = net(image, tokens)
        outputs = net.train()(image, tokens)
        plain = make_net(return_auxiliary=False).train()(image, tokens)
    assert isinstance(logits, torch.Tensor) and isinstance(plain, torch.Tensor)
    assert set(outputs) == {"pred", "similarity"}
    assert outputs["similarity"].shape == (2, 1, SIZE // 16, SIZE // 16)
    # No layer behaves differently in training: the training logits are the inference logits.
    torch.testing.assert_close(outputs["pred"], logits)
    torch.testing.assert_close(plain, logits)


def test_only_adaptation_parameters_train(tokenizer):
    net = make_net().train()
    clip_params = {id(p) for p in net.image_encoder.parameters()} | {id(p) for p in net.text_encoder.parameters()}
    assert clip_params and all(not p.requires_grad for p in net.image_encoder.parameters())
    assert all(not p.requires_grad for p in net.text_encoder.parameters())
    image = torch.rand(2, 1, SIZE, SIZE)
    label = (torch.rand(2, 1, SIZE, SIZE) > 0.7).float()
    tokens = tokenizer(["Upper left lung infection.", "Lower right lung infection."])
    loss_fn = AuxiliaryOutputLoss(torch.nn.BCEWithLogitsLoss(), SimilarityMapLoss(), weight=0.1, aux_keys="similarity")
    loss = loss_fn(net(image, tokens), label)
    loss.backward()
    for p in net.parameters():
        if id(p) in clip_params:
            assert p.grad is None
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
    counts = net.count_parameters()
    assert 0 < counts["trainable"] < counts["total"]


def test_trainable_fraction_is_small_with_vit_b16():
    counts = TGCNet(clip_model_name="ViT-B-16").count_parameters()
    assert counts["total"] > 100_000_000
    assert counts["trainable"] / counts["total"] < 0.05


def test_text_changes_output_and_default_prompt(tokenizer):
    net = make_net()
    image = torch.rand(1, 1, SIZE, SIZE)
    with torch.no_grad():
        left = net(image, tokenizer(["Upper left lung infection."]))
        right = net(image, tokenizer(["Lower right lung infection."]))
        default = net(image)
        explicit_default = net(image, tokenizer(["Pulmonary infection in the lungs."]))
    assert (left - right).abs().max() > 1e-4
    torch.testing.assert_close(default, explicit_default)


def test_one_report_broadcasts_over_a_batch_of_slices(tokenizer):
    net = make_net()
    tokens = tokenizer(["Ground-glass opacity in the lower left lobe."])
    images = torch.rand(3, 1, SIZE, SIZE)
    with torch.no_grad():
        batched = net(images, tokens)
        single = net(images[1:2], tokens)
    torch.testing.assert_close(batched[1:2], single, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="2 reports for 3 images"):
        net(images, tokens.expand(2, -1))


def test_knowledge_switch(tokenizer):
    image = torch.rand(1, 1, SIZE, SIZE)
    report = tokenizer(["Consolidation in the lower right lung."])
    knowledge = tokenizer(["Consolidation is lung filled with fluid.", ""]).unsqueeze(0)
    knowledge[0, 1] = 0  # padding row
    with torch.no_grad():
        with_kb = make_net(use_knowledge=True)
        differs = (with_kb(image, report, knowledge) - with_kb(image, report)).abs().max()
        without_kb = make_net(use_knowledge=False)
        same = (without_kb(image, report, knowledge) - without_kb(image, report)).abs().max()
    assert differs > 1e-5
    assert same == 0


@pytest.mark.parametrize("switches", [{"use_cnn_branch": False}, {"use_vlcm": False}])
def test_ablations_run_and_train(tokenizer, switches):
    net = make_net(**switches).train()
    label = (torch.rand(1, 1, SIZE, SIZE) > 0.5).float()
    out = net(torch.rand(1, 1, SIZE, SIZE), tokenizer(["Left lung infection."]))
    assert out["pred"].shape == (1, 1, SIZE, SIZE)
    if switches.get("use_vlcm") is False:
        assert set(out) == {"pred"}  # no similarity map, hence no alignment term
        assert not hasattr(net, "calibration")
    else:
        assert not hasattr(net, "structure_branch")
        assert SimilarityMapLoss()(out["similarity"], label).item() > 0
    out["pred"].mean().backward()


def test_alignment_loss_follows_the_mask(tokenizer):
    net = make_net().train()
    logits = net(torch.rand(1, 1, SIZE, SIZE), tokenizer(["Right lung infection."]))["similarity"].detach()
    agree = (torch.nn.functional.interpolate(logits, size=(SIZE, SIZE)) > 0).float()
    alignment_loss = SimilarityMapLoss()
    assert alignment_loss(logits, agree) < alignment_loss(logits, 1 - agree)


def test_alignment_term_trains_the_parts_before_the_similarity_map(tokenizer):
    net = make_net().train()
    label = (torch.rand(1, 1, SIZE, SIZE) > 0.5).float()
    outputs = net(torch.rand(1, 1, SIZE, SIZE), tokenizer(["Right lung infection."]))
    SimilarityMapLoss()(outputs["similarity"], label).backward()
    # The map is computed from the deepest scale (its ViT projection and fusion with the CNN) and the text sequence.
    upstream = [
        *net.calibration.parameters(),
        *net.pixel_to_clip.parameters(),
        net.vit_projections[-1].conv.weight,
        net.fusions[-1].conv.weight,
        net.structure_branch.stem.conv.weight,
        net.prompt_tokens,
        net.text_adapter.up.weight,
    ]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in upstream)
    assert all(p.grad is None for p in (*net.up_blocks.parameters(), *net.head.parameters()))  # after the map


def test_wrong_batch_of_config_arguments():
    with pytest.raises(ValueError, match="cnn_channels"):
        TGCNet(clip_model_name=TINY_CLIP_NAME, cnn_channels=(8, 16))


def _head_inputs(net, image, tokens):
    """The channels the head reads, recorded by a forward hook."""
    seen = []
    handle = net.head.register_forward_hook(lambda module, args, output: seen.append(args[0]))
    with torch.no_grad():
        net(image, tokens)
    handle.remove()
    return seen[0]


def test_text_guidance_channels_reach_every_finer_scale(tokenizer):
    """The guidance channels join the skip of each up block and the full-resolution features; with 0 they are gone."""
    image = torch.rand(2, 1, SIZE, SIZE)
    tokens = tokenizer(["Upper left lung infection.", "Lower right lung infection."])
    guided, plain = make_net(guidance_channels=8), make_net(guidance_channels=0)
    assert _head_inputs(guided, image, tokens).shape[1] == _head_inputs(plain, image, tokens).shape[1] + 8
    for guided_block, plain_block in zip(guided.up_blocks, plain.up_blocks):
        assert guided_block.conv[0].conv.in_channels == plain_block.conv[0].conv.in_channels + 8
    assert not hasattr(plain, "guidance")
    # The last guidance channels of the head's input are the report's: another report changes them.
    first = _head_inputs(guided, image, tokens)[:, -8:]
    second = _head_inputs(guided, image, tokens.flip(0))[:, -8:]
    assert not torch.allclose(first, second)
    with pytest.raises(ValueError, match="guidance_channels"):
        make_net(guidance_channels=-1)


def test_sentence_film_before_the_vlcm_is_a_switch(tokenizer):
    """With the VLCM the pooled-report FiLM is optional; without it, it is the text path and always there."""
    assert hasattr(make_net(), "film") and hasattr(make_net(), "calibration")
    assert not hasattr(make_net(sentence_film=False), "film")
    no_vlcm = make_net(use_vlcm=False, sentence_film=False)
    assert hasattr(no_vlcm, "film") and not hasattr(no_vlcm, "calibration")
    image = torch.rand(1, 1, SIZE, SIZE)
    with torch.no_grad():
        upper = no_vlcm(image, tokenizer(["Upper left lung infection."]))
        lower = no_vlcm(image, tokenizer(["Lower right lung infection."]))
    assert not torch.allclose(upper, lower)

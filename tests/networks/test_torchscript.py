"""TorchScript by scripting (``torch.jit.script``, what MONAI's ``ckpt_export`` and the Model Zoo's CI do): TGC-Net and
VLSA-Net, with their switches on and off, compile, survive saving and loading, and give the eager network's outputs for image-only
calls and for text inputs, at more than one image size; the text still steers the scripted network."""

import io

import pytest
import torch
from monai_ext.clip import TINY_CLIP_NAME
from monai_ext.networks.blocks.em_aggregation import EMAggregation
from monai_ext.networks.nets import TGCNet, VLSANet

PROMPTS = {"background": ["outside the organ"], "disc": ["a round region", "where vessels enter"], "cup": ["inside"]}
REPORTS = ["Upper left lung infection.", "Bilateral pulmonary infection, two infected areas."]
SIZES = [(64, 64), (48, 80)]  # a scripted network keeps the image size free


def scripted(net: torch.nn.Module) -> torch.jit.ScriptModule:
    """Script, save and load back, as ckpt_export writes the file and torch.jit.load reads it."""
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buffer)
    buffer.seek(0)
    return torch.jit.load(buffer)


def assert_same(eager, script, *inputs):
    with torch.no_grad():
        expected, actual = eager(*inputs), script(*inputs)
    assert isinstance(actual, torch.Tensor) and actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)
    return actual


@pytest.mark.parametrize(
    "switches",
    [
        {},
        {"use_cnn_branch": False, "use_vlcm": False, "use_knowledge": False},
        {"guidance_channels": 0, "sentence_film": False},
    ],
)
def test_tgcnet_scripted_matches_eager(tokenizer, switches):
    torch.manual_seed(0)
    net = TGCNet(clip_model_name=TINY_CLIP_NAME, **switches).eval()
    script = scripted(net)
    text = tokenizer(REPORTS)
    knowledge = torch.stack([tokenizer(["Ground-glass opacity.", "Consolidation."]), torch.zeros(2, 77).long()])
    for height, width in SIZES:
        image = torch.rand(2, 1, height, width)
        assert_same(net, script, image)  # the default prompt, as verify_net_in_out and ckpt_export call it
        steered = assert_same(net, script, image, text, knowledge)
        other = assert_same(net, script, image, text.flip(0), knowledge)
    assert (steered - other).abs().max() > 1e-4  # the report is an input of the scripted graph, not a constant


@pytest.mark.parametrize("switches", [{}, {"use_em": False, "use_text": False}])
def test_vlsanet_scripted_matches_eager(tokenizer, switches):
    torch.manual_seed(0)
    net = VLSANet(TINY_CLIP_NAME, class_prompts=PROMPTS, num_bases=8, decoder_channels=16, **switches).eval()
    script = scripted(net)
    for height, width in SIZES:
        image = torch.rand(2, 3, height, width)
        default = assert_same(net, script, image)
        if switches.get("use_text", True):
            override = assert_same(net, script, image, tokenizer(["outside", "the rim", "the middle"]))
            assert (default - override).abs().max() > 1e-4


def test_a_scripted_em_block_refuses_to_train():
    script = torch.jit.script(EMAggregation(8, num_bases=4))
    with pytest.raises(torch.jit.Error, match="eval mode only"):
        script.train()(torch.rand(2, 8, 4, 4))

"""TorchScript and ONNX export of a bundle's network (image + report tokens + knowledge tokens): the exported models
give PyTorch's output, for the example report and for another one (the text input is live, not baked in), and for a
batch that mixes reports (the batch dimension is free)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from monai_ext.bundle.export import ExportWrapper, example_inputs, export_bundle_model, run_onnx, run_torchscript
from monai_ext.bundle.parser import bundle_parser, load_bundle_network
from monai_ext.io import atomic_save

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLE = os.path.join(REPO, "bundles", "tgcnet")
DEMO = ["configs/demo_inference.json"]
OTHER_TEXT = "Unilateral pulmonary infection, one infected area, lower right lung; pleural effusion."


def save_tiny_checkpoint(path: str, seed: int = 0) -> str:
    """TGC-Net with the tiny CLIP, its zero-initialised text adapter randomised so that the report matters more."""
    parser = bundle_parser(BUNDLE, DEMO)
    net = parser.get_parsed_content("network_def")
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in net.text_adapter.parameters():
            p.normal_(0, 0.2)
    atomic_save({"model": net.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    checkpoint = save_tiny_checkpoint(str(root / "model.pt"))
    result = export_bundle_model(BUNDLE, str(root / "out"), checkpoint=checkpoint, config_files=DEMO)
    return checkpoint, result


def test_export_writes_both_formats_checked_against_pytorch(exported):
    _, result = exported
    assert os.path.isfile(result["torchscript"]) and os.path.isfile(result["onnx"])
    assert set(result["inputs"]) == {"image", "text_tokens", "knowledge_tokens"}
    assert result["inputs"]["text_tokens"] == [1, 77] and result["inputs"]["knowledge_tokens"] == [1, 4, 77]
    assert all(diff <= 1e-4 for diff in result["max_abs_diff"].values())
    extra = {"inputs.json": "", "metadata.json": ""}
    torch.jit.load(result["torchscript"], _extra_files=extra)
    assert [i["name"] for i in json.loads(extra["inputs.json"])["inputs"]] == [
        "image",
        "text_tokens",
        "knowledge_tokens",
    ]
    traced_size = result["inputs"]["image"][2:]  # the demo's 128 px, not the metadata's default 224
    data_format = json.loads(extra["metadata.json"])["network_data_format"]
    assert data_format["inputs"]["image"]["spatial_shape"] == traced_size != [224, 224]
    assert data_format["outputs"]["pred"]["spatial_shape"] == traced_size


def test_exported_models_follow_a_non_default_report(exported):
    checkpoint, result = exported
    parser = bundle_parser(BUNDLE, DEMO)
    net = load_bundle_network(parser, checkpoint)
    default_inputs = example_inputs(parser)
    inputs = example_inputs(parser, OTHER_TEXT, seed=1)
    assert not torch.equal(inputs["text_tokens"], default_inputs["text_tokens"])
    assert inputs["knowledge_tokens"].abs().sum() > 0  # the report matched knowledge sentences
    wrapper = ExportWrapper(net, ["text_tokens", "knowledge_tokens"])
    with torch.no_grad():
        eager = wrapper(*inputs.values())
        eager_default_text = wrapper(inputs["image"], default_inputs["text_tokens"], default_inputs["knowledge_tokens"])
    assert (eager - eager_default_text).abs().max() > 1e-3  # the report changes the output
    torch.testing.assert_close(run_torchscript(result["torchscript"], inputs), eager, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.from_numpy(run_onnx(result["onnx"], inputs)), eager, atol=1e-4, rtol=1e-4)


def test_exported_models_take_a_batch_of_different_reports(exported):
    checkpoint, result = exported
    parser = bundle_parser(BUNDLE, DEMO)
    net = load_bundle_network(parser, checkpoint)
    parts = [example_inputs(parser, seed=2), example_inputs(parser, OTHER_TEXT, seed=3), example_inputs(parser, seed=4)]
    batch = {name: torch.cat([part[name] for part in parts]) for name in parts[0]}
    wrapper = ExportWrapper(net, ["text_tokens", "knowledge_tokens"])
    with torch.no_grad():
        eager = wrapper(*batch.values())
        one_by_one = torch.cat([wrapper(*part.values()) for part in parts])
    torch.testing.assert_close(eager, one_by_one, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(run_torchscript(result["torchscript"], batch), eager, atol=1e-4, rtol=1e-4)
    onnx_out = torch.from_numpy(run_onnx(result["onnx"], batch))
    assert onnx_out.shape[0] == 3
    torch.testing.assert_close(onnx_out, eager, atol=1e-4, rtol=1e-4)


def test_export_refuses_to_overwrite(exported):
    _, result = exported
    out_dir = os.path.dirname(result["onnx"])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_bundle_model(BUNDLE, out_dir, formats="onnx", config_files=DEMO)
    with pytest.raises(ValueError, match="formats"):
        export_bundle_model(BUNDLE, out_dir, formats="tflite", config_files=DEMO)

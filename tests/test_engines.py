"""PrepareBatchTextInput: image and label go to the device, the text inputs stay where the data loader made them."""

import torch
from monai.engines import PrepareBatchExtraInput
from monai_ext.engines import PrepareBatchTextInput


def _batch():
    return {
        "image": torch.rand(2, 1, 4, 4),
        "label": torch.rand(2, 1, 4, 4),
        "text_tokens": torch.ones(2, 77, dtype=torch.long),
        "knowledge_tokens": torch.zeros(2, 3, 77, dtype=torch.long),
    }


def test_text_inputs_stay_on_the_host_as_keywords_or_positions():
    batch = _batch()
    keywords = {"text_tokens": "text_tokens", "knowledge_tokens": "knowledge_tokens"}
    # "meta" stands for an accelerator: whatever goes there is no longer the host tensor.
    image, label, args, kwargs = PrepareBatchTextInput(keywords)(batch, torch.device("meta"))
    assert image.device.type == "meta" and label.device.type == "meta" and args == ()
    assert kwargs.keys() == keywords.keys()
    assert all(kwargs[key] is batch[key] for key in keywords)
    _, _, args, kwargs = PrepareBatchTextInput(["text_tokens"])(batch, torch.device("meta"))
    assert kwargs == {} and len(args) == 1 and args[0] is batch["text_tokens"]
    _, _, args, _ = PrepareBatchTextInput("text_tokens")(batch, torch.device("meta"))
    assert args[0] is batch["text_tokens"]
    # MONAI's own class moves them: the difference this class exists for.
    _, _, _, moved = PrepareBatchExtraInput(keywords)(batch, torch.device("meta"))
    assert moved["text_tokens"].device.type == "meta"

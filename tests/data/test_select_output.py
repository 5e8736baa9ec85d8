"""SelectOutput(d): the logits out of a network's training output dict, a tensor passed through unchanged."""

import pytest
import torch
from monai_ext.data import SelectOutput, SelectOutputd


def test_array_version():
    logits, similarity = torch.randn(1, 8, 8), torch.randn(1, 2, 2)
    assert SelectOutput()({"pred": logits, "similarity": similarity}) is logits
    assert SelectOutput()(logits) is logits
    assert SelectOutput("similarity")({"pred": logits, "similarity": similarity}) is similarity
    with pytest.raises(KeyError):
        SelectOutput("logits")({"pred": logits})


def test_dictionary_version_on_decollated_training_and_evaluation_items():
    logits, similarity, label = torch.randn(1, 8, 8), torch.randn(1, 2, 2), torch.zeros(1, 8, 8)
    select = SelectOutputd(keys="pred", output_key="pred")
    item = {"pred": {"pred": logits, "similarity": similarity}, "label": label}
    selected = select(item)
    assert selected["pred"] is logits and selected["label"] is label
    assert isinstance(item["pred"], dict)  # the input item is not changed
    assert select({"pred": logits, "label": label})["pred"] is logits
    assert SelectOutputd(keys="pred", allow_missing_keys=True)({"label": label}) == {"label": label}

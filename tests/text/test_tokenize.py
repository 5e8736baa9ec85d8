"""ClipTokenize(d) and HFTokenize(d): shapes, padding rows, truncation warnings, unicode, clear input errors."""

import logging

import pytest
import torch
from monai_ext.clip import TINY_CLIP_NAME, get_clip_tokenizer
from monai_ext.text import ClipTokenize, ClipTokenized, HFTokenize, HFTokenized, TextInputError


def test_clip_tokenize_string_and_list():
    tokenize = ClipTokenize(TINY_CLIP_NAME)
    single = tokenize("Bilateral pulmonary infection.")
    batch = tokenize(["Bilateral pulmonary infection.", "Lower left lung."])
    assert single.shape == (77,) and single.dtype == torch.long
    assert batch.shape == (2, 77)
    assert torch.equal(batch[0], single)
    assert torch.equal(
        batch, get_clip_tokenizer(TINY_CLIP_NAME)(["Bilateral pulmonary infection.", "Lower left lung."])
    )


def test_clip_tokenize_custom_context_length():
    tokens = ClipTokenize(TINY_CLIP_NAME, context_length=16)("left lung")
    assert tokens.shape == (16,) and tokens[3] == 49407


@pytest.mark.parametrize("bad", ["", "   \n", 3, None, ["ok", 5], [], b"bytes"])
def test_clip_tokenize_rejects_bad_text(bad):
    with pytest.raises(TextInputError):
        ClipTokenize(TINY_CLIP_NAME)(bad)


def test_clip_tokenize_empty_padding_rows_when_allowed():
    tokens = ClipTokenize(TINY_CLIP_NAME, allow_empty=True)(["pleural effusion", "", ""])
    assert tokens.shape == (3, 77)
    assert tokens[0, 0] == 49406 and tokens[1:].eq(0).all()
    with pytest.raises(TextInputError, match="whitespace"):
        ClipTokenize(TINY_CLIP_NAME, allow_empty=True)(["  "])


def test_clip_tokenize_truncates_with_warning(caplog):
    long_text = " ".join(["consolidation"] * 100)
    with caplog.at_level(logging.WARNING, logger="monai_ext.text.tokenize"):
        tokens = ClipTokenize(TINY_CLIP_NAME)(long_text)
    assert tokens.shape == (77,) and tokens[-1] == 49407  # still ends with end-of-text
    expected_dropped = len(get_clip_tokenizer(TINY_CLIP_NAME).encode(long_text)) + 2 - 77
    assert any(f"{expected_dropped} tokens dropped" in r.getMessage() for r in caplog.records)


def test_clip_tokenize_no_warning_for_short_text(caplog):
    with caplog.at_level(logging.WARNING, logger="monai_ext.text.tokenize"):
        ClipTokenize(TINY_CLIP_NAME)("right lung")
    assert not caplog.records


def test_clip_tokenize_non_ascii():
    tokens = ClipTokenize(TINY_CLIP_NAME)(["Épanchement pleural à gauche", "右肺下叶感染", "ödem 😷"])
    lengths = (tokens != 0).sum(dim=1)
    assert (lengths > 3).all()  # start, several BPE tokens, end
    assert len(set(map(tuple, tokens.tolist()))) == 3


def test_clip_tokenized_dict_and_list_values():
    transform = ClipTokenized(
        keys=["text", "knowledge"],
        output_key=["text_tokens", "knowledge_tokens"],
        model_name=TINY_CLIP_NAME,
        allow_empty=True,
    )
    out = transform({"text": "Left lung infection.", "knowledge": ["infection: ...", ""], "image": 1})
    assert out["text_tokens"].shape == (77,) and out["knowledge_tokens"].shape == (2, 77)
    assert out["knowledge_tokens"][1].eq(0).all() and out["image"] == 1
    assert ClipTokenized("text", output_key=None, model_name=TINY_CLIP_NAME)({"text": "a"})["text_tokens"].shape == (
        77,
    )
    with pytest.raises(ValueError, match="one name per key"):
        ClipTokenized(["a", "b"], output_key="x", model_name=TINY_CLIP_NAME)


@pytest.fixture
def hf_tokenizer_dir(tmp_path):
    """A tiny word-level Hugging Face tokenizer saved to a local folder (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "left", "right", "lung", "infection", "lower", "upper", "é"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    path = tmp_path / "tiny_hf_tokenizer"
    tokenizer.save_pretrained(path)
    return path


def test_hf_tokenize_local_folder(hf_tokenizer_dir, caplog):
    tokenize = HFTokenize(hf_tokenizer_dir, context_length=6)
    assert tokenize("left lung infection").tolist() == [4, 6, 7, 0, 0, 0]
    assert tokenize(["right lung", "é"]).tolist() == [[5, 6, 0, 0, 0, 0], [10, 0, 0, 0, 0, 0]]
    with caplog.at_level(logging.WARNING, logger="monai_ext.text.tokenize"):
        truncated = tokenize("left lung lower lung upper lung infection right")
    assert truncated.tolist() == [4, 6, 8, 6, 9, 6]
    assert any("2 tokens dropped" in r.getMessage() for r in caplog.records)
    with pytest.raises(TextInputError):
        tokenize("")


def test_hf_tokenized_mask_and_padding(hf_tokenizer_dir):
    transform = HFTokenized("text", path=hf_tokenizer_dir, context_length=4, mask_key="text_mask", allow_empty=True)
    out = transform({"text": ["left lung", ""]})
    assert out["text_tokens"].tolist() == [[4, 6, 0, 0], [0, 0, 0, 0]]
    assert out["text_mask"].tolist() == [[1, 1, 0, 0], [0, 0, 0, 0]]


def test_hf_tokenize_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_tokenizer"):
        HFTokenize(tmp_path / "no_such_tokenizer", context_length=8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        HFTokenize(tmp_path / "empty", context_length=8)


def test_clip_tokenize_encodes_each_distinct_text_once_and_pickles_without_its_cache():
    import pickle

    tokenize = ClipTokenize(TINY_CLIP_NAME)
    calls = []
    real = tokenize._tokenizer()
    tokenize._loaded_tokenizer = lambda texts, **kw: (calls.append(list(texts)), real(texts, **kw))[1]
    first = tokenize(["Left lung.", "Right lung.", "Left lung."])
    first[0].fill_(7)  # callers may modify what they get: the cache must not change
    second = tokenize("Left lung.")
    assert calls == [["Left lung."], ["Right lung."]]
    torch.testing.assert_close(second, real(["Left lung."])[0].long())
    restored = pickle.loads(pickle.dumps(ClipTokenize(TINY_CLIP_NAME)))
    assert restored._cache == {} and restored._loaded_tokenizer is None
    torch.testing.assert_close(restored("Right lung."), real(["Right lung."])[0].long())


def test_hf_tokenized_error_names_the_image(hf_tokenizer_dir):
    transform = HFTokenized("text", path=hf_tokenizer_dir, context_length=4)
    with pytest.raises(TextInputError, match=r"Report 'text' of '/data/case_07.png'.*empty"):
        transform({"image": "/data/case_07.png", "text": "  "})

import pytest
from monai_ext.clip import TINY_CLIP_NAME, get_clip_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    """The tiny CLIP's tokenizer, shared by the network tests."""
    return get_clip_tokenizer(TINY_CLIP_NAME)

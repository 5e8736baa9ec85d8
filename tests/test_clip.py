"""create_clip: offline-first loading, checkpoint round trip, clear errors; tokenizer; lazy config registration."""

import json
import logging
import os
import subprocess
import sys
import time

import pytest
import torch
from monai_ext.clip import (
    ALIGNED_TINY_CLIP_CHECKPOINT,
    TINY_CLIP_NAME,
    ClipCheckpointError,
    PretrainedWeightsNotFoundError,
    create_clip,
    find_pretrained_weights,
    get_clip_tokenizer,
)
from monai_ext.io import sha256_file


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    """Point every cache location at empty temp folders so no test sees (or fills) the real caches."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return home


def _inputs():
    torch.manual_seed(1)
    image = torch.rand(2, 3, 224, 224)
    tokens = get_clip_tokenizer(TINY_CLIP_NAME)(["Bilateral lower lung infection.", "No findings."])
    return image, tokens


def test_random_init_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="monai_ext.clip"):
        model = create_clip(TINY_CLIP_NAME)
    assert any("random weights" in r.getMessage() for r in caplog.records)
    assert not model.training
    assert model.visual.output_dim == 64
    assert 1_000_000 < sum(p.numel() for p in model.parameters()) < 20_000_000


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, suffix, caplog):
    torch.manual_seed(0)
    source = create_clip(TINY_CLIP_NAME)
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    else:
        torch.save({"state_dict": source.state_dict()}, path)
    torch.manual_seed(123)  # a different random init, so equality proves the weights were loaded
    caplog.clear()
    with caplog.at_level(logging.INFO):
        loaded = create_clip(TINY_CLIP_NAME, checkpoint=str(path))
    messages = [r.getMessage() for r in caplog.records]
    assert not any("random" in m for m in messages) and any(str(path) in m for m in messages)
    image, tokens = _inputs()
    with torch.no_grad():
        assert torch.equal(source.encode_image(image), loaded.encode_image(image))
        assert torch.equal(source.encode_text(tokens), loaded.encode_text(tokens))


def test_missing_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        create_clip(TINY_CLIP_NAME, checkpoint=path)


def test_checkpoint_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(ClipCheckpointError, match="list.pt.*state dict"):
        create_clip(TINY_CLIP_NAME, checkpoint=path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ClipCheckpointError, match="garbage.pt"):
        create_clip(TINY_CLIP_NAME, checkpoint=garbage)


def test_openai_torchscript_archive_loads_its_weights(tmp_path):
    """OpenAI's ``ViT-B-16.pt`` is a TorchScript archive in float16 with settings (input_resolution, ...) stored as
    tensors; a traced tiny CLIP with float16-rounded weights stands in for it (the real file cannot be downloaded
    here)."""
    source = create_clip(TINY_CLIP_NAME).eval().half()
    source.register_buffer("input_resolution", torch.tensor(224))  # open_clip's CLIP has the other two settings
    image, tokens = _inputs()
    traced = torch.jit.trace_module(source.float(), {"encode_image": image[:1]}, check_trace=False)
    path = tmp_path / "ViT-B-16.pt"
    torch.jit.save(traced, str(path))
    loaded = create_clip(TINY_CLIP_NAME, checkpoint=path).eval()
    reference = create_clip(TINY_CLIP_NAME).eval()
    reference.load_state_dict({k: v for k, v in source.state_dict().items() if k in reference.state_dict()})
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_image(image), reference.encode_image(image))
        torch.testing.assert_close(loaded.encode_text(tokens), reference.encode_text(tokens))


def test_checkpoint_of_another_architecture_names_the_model(tmp_path):
    state = create_clip(TINY_CLIP_NAME).state_dict()
    state.pop("ln_final.weight")
    state["text_projection"] = torch.zeros(128, 32)
    path = tmp_path / "other.pt"
    torch.save(state, path)
    with pytest.raises(ClipCheckpointError, match=f"{TINY_CLIP_NAME}.*ln_final.weight.*text_projection"):
        create_clip(TINY_CLIP_NAME, checkpoint=path)


def test_uncached_pretrained_fails_fast_with_instructions(tmp_path):
    start = time.monotonic()
    with pytest.raises(PretrainedWeightsNotFoundError) as info:
        create_clip("ViT-B-16", pretrained="laion2b_s34b_b88k", cache_dir=tmp_path / "weights")
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "'ViT-B-16' / 'laion2b_s34b_b88k'" in message
    assert str(tmp_path / "weights") in message
    assert "models--laion--CLIP-ViT-B-16-laion2B-s34B-b88K" in message
    assert "checkpoint=" in message
    assert isinstance(info.value, FileNotFoundError)


def test_pretrained_found_in_local_hub_cache(tmp_path):
    snapshot = tmp_path / "models--laion--CLIP-ViT-B-16-laion2B-s34B-b88K" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"x")
    found, looked = find_pretrained_weights("ViT-B-16", "laion2b_s34b_b88k", cache_dir=tmp_path)
    assert found == snapshot / "open_clip_pytorch_model.bin"
    (snapshot / "open_clip_model.safetensors").write_bytes(b"x")
    found, _ = find_pretrained_weights("ViT-B-16", "laion2b_s34b_b88k", cache_dir=tmp_path)
    assert found.name == "open_clip_model.safetensors"


def test_pretrained_flat_file_in_cache_dir(tmp_path):
    flat = tmp_path / "ViT-B-16-openai.safetensors"
    flat.write_bytes(b"x")
    found, _ = find_pretrained_weights("ViT-B-16", "openai", cache_dir=tmp_path)
    assert found == flat


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="not an open_clip pretrained tag"):
        create_clip("ViT-B-16", pretrained="no-such-tag")
    with pytest.raises(ValueError, match="Unknown CLIP model name 'ViT-Q-99'"):
        create_clip("ViT-Q-99")


def test_tokenizer_is_clip_bpe():
    tokens = get_clip_tokenizer(TINY_CLIP_NAME)(["left lung", "right lung effusion"])
    assert tokens.shape == (2, 77) and tokens.dtype == torch.long
    assert (tokens[:, 0] == 49406).all()  # <start_of_text>
    assert tokens[0, 3] == 49407 and tokens[0, 4:].eq(0).all()  # "left lung" -> 2 BPE tokens, <end_of_text>, padding


def test_import_does_not_register_configs():
    code = (
        "import open_clip, monai_ext.clip as c; "
        "assert c.TINY_CLIP_NAME not in open_clip.list_models(); "
        "c.get_clip_tokenizer(c.TINY_CLIP_NAME); assert c.TINY_CLIP_NAME in open_clip.list_models()"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_shipped_aligned_tiny_clip_matches_its_record_and_loads_like_any_checkpoint():
    """The pretrained tiny CLIP that ships with the package (scripts/pretrain_clip.py) is the file its record names,
    loads through the same checkpoint path as real weights, and is not the random initialisation."""
    digest = sha256_file(ALIGNED_TINY_CLIP_CHECKPOINT)
    with open(ALIGNED_TINY_CLIP_CHECKPOINT + ".sha256", encoding="utf-8") as f:
        assert f.read().split()[0] == digest
    with open(os.path.splitext(ALIGNED_TINY_CLIP_CHECKPOINT)[0] + ".json", encoding="utf-8") as f:
        record = json.load(f)
    assert record["sha256"] == digest and record["model_name"] == TINY_CLIP_NAME and record["dtype"] == "float16"
    aligned = create_clip(TINY_CLIP_NAME, checkpoint=ALIGNED_TINY_CLIP_CHECKPOINT)
    random_init = create_clip(TINY_CLIP_NAME)
    image, tokens = _inputs()
    with torch.no_grad():
        aligned_text, random_text = aligned.encode_text(tokens), random_init.encode_text(tokens)
    assert aligned_text.dtype == torch.float32 and torch.isfinite(aligned_text).all()
    assert not torch.allclose(aligned_text, random_text, atol=1e-3)

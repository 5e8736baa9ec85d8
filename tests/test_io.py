import hashlib
import json
import os

import pytest
import torch
from monai_ext.checkpoint import CheckpointError, CheckpointNotFoundError, load_state_dict_checked, safe_torch_load
from monai_ext.io import (
    PathOutsideRootError,
    atomic_save,
    atomic_write,
    atomic_write_json,
    atomic_write_path,
    atomic_write_text,
    check_within_root,
    sha256_file,
)


def _leftovers(folder):
    return [name for name in os.listdir(folder) if name.endswith(".tmp")]


def test_atomic_write_creates_file_and_parents(tmp_path):
    target = tmp_path / "a" / "b" / "out.bin"
    with atomic_write(target) as f:
        f.write(b"payload")
    assert target.read_bytes() == b"payload"
    assert _leftovers(target.parent) == []


def test_atomic_write_refuses_existing_without_overwrite(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(FileExistsError, match="out.txt"):
        with atomic_write(target, mode="w") as f:
            f.write("new")
    assert target.read_text() == "old"
    with atomic_write(target, mode="w", overwrite=True) as f:
        f.write("new")
    assert target.read_text() == "new"


def test_exception_mid_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old checkpoint")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_write(target, overwrite=True) as f:
            f.write(b"half of the new")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old checkpoint"
    assert _leftovers(tmp_path) == []


def test_exception_mid_write_of_new_file_leaves_nothing(tmp_path):
    target = tmp_path / "new.json"
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target, mode="w") as f:
            f.write("{")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_file_created_by_someone_else_during_write_is_not_clobbered(tmp_path):
    target = tmp_path / "race.txt"
    with pytest.raises(FileExistsError):
        with atomic_write(target, mode="w") as f:
            target.write_text("theirs")
            f.write("ours")
    assert target.read_text() == "theirs"
    assert _leftovers(tmp_path) == []


def test_atomic_write_keeps_permissions_of_replaced_file(tmp_path):
    target = tmp_path / "script.sh"
    target.write_text("echo old")
    os.chmod(target, 0o750)
    atomic_write_text(target, "echo new", overwrite=True)
    assert os.stat(target).st_mode & 0o777 == 0o750


def test_atomic_write_rejects_bad_mode_and_folder(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "x", mode="a"):
            pass
    with pytest.raises(IsADirectoryError):
        with atomic_write(tmp_path):
            pass


def test_text_and_json_helpers(tmp_path):
    atomic_write_text(tmp_path / "t.txt", "héllo")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    path = tmp_path / "r.json"
    atomic_write_json(path, {"b": torch.tensor(2.5), "a": [1, 2], "c": os.fspath(tmp_path)})
    text = path.read_text()
    assert text.index('"a"') < text.index('"b"') and text.endswith("\n")
    assert json.loads(text) == {"a": [1, 2], "b": 2.5, "c": os.fspath(tmp_path)}
    with pytest.raises(FileExistsError):
        atomic_write_json(path, {})


def test_atomic_save_and_safe_load_round_trip(tmp_path):
    state = {"weight": torch.arange(4.0)}
    atomic_save(state, tmp_path / "m.pt")
    loaded = safe_torch_load(tmp_path / "m.pt")
    assert torch.equal(loaded["weight"], state["weight"])
    with pytest.raises(FileExistsError):
        atomic_save(state, tmp_path / "m.pt")


def test_safe_load_missing_file(tmp_path):
    path = str(tmp_path / "nope.pt")
    with pytest.raises(CheckpointNotFoundError) as info:
        safe_torch_load(path)
    assert str(info.value) == f"Checkpoint file '{path}' does not exist."  # a sentence, not an OSError tuple
    assert info.value.filename == path and info.value.errno == 2
    with pytest.raises(FileNotFoundError):
        safe_torch_load(path)


def test_bundle_checkpoint_loader_says_weights_must_be_trained_first(tmp_path):
    from monai_ext.handlers import CheckedCheckpointLoader

    loader = CheckedCheckpointLoader(str(tmp_path / "models" / "model.pt"), network=torch.nn.Linear(2, 2))
    with pytest.raises(CheckpointNotFoundError, match=r"model.pt' does not exist\. No weights ship .* --ckpt_dir"):
        loader()


def test_predict_script_says_in_one_line_that_weights_are_missing(tmp_path):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, os.path.join(repo, "scripts", "predict.py"), "--bundle_dir", os.path.join(repo, "bundles", "tgcnet"),
         "--configs", "configs/demo_inference.json", "--checkpoint", str(tmp_path / "none" / "model.pt"),
         "--image", str(tmp_path / "x.png"), "--text", "Left lung.", "--output_dir", str(tmp_path / "out")],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "CheckpointNotFoundError: Checkpoint file" in result.stderr and "No weights ship" in result.stderr


@pytest.mark.parametrize("corrupt", ["truncated", "empty", "text", "random", "sentence"])
def test_safe_load_corrupt_files(tmp_path, corrupt):
    path = tmp_path / "bad.pt"
    atomic_save({"weight": torch.zeros(64)}, path)
    data = path.read_bytes()
    contents = {
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "text": b"not a checkpoint",
        "random": bytes(range(7, 200)),
        "sentence": b"this is not a checkpoint",  # the weights-only unpickler raises IndexError on this one
    }
    path.write_bytes(contents[corrupt])
    with pytest.raises(CheckpointError, match="bad.pt") as info:
        safe_torch_load(path)
    assert "corrupt" in str(info.value) or "empty" in str(info.value)


class _Custom:
    def __init__(self):
        self.value = 1


def test_safe_load_refuses_pickled_objects(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(CheckpointError, match="not a plain state dict/checkpoint") as info:
        safe_torch_load(tmp_path / "module.pt")
    assert "Linear" in str(info.value)
    torch.save({"obj": _Custom()}, tmp_path / "custom.pt")
    with pytest.raises(CheckpointError, match="not a plain state dict/checkpoint"):
        safe_torch_load(tmp_path / "custom.pt")


class _NetA(torch.nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.encoder = torch.nn.Linear(2, width)
        self.head = torch.nn.Linear(width, 1)


class _NetB(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Conv2d(1, 2, 3)


def test_load_state_dict_checked_accepts_plain_checkpoint_and_ddp_forms(tmp_path):
    source = _NetA()
    for form in (
        source.state_dict(),
        {"model": source.state_dict(), "optimizer": {"state": {}}, "epoch": 3},
        {f"module.{k}": v for k, v in source.state_dict().items()},
    ):
        target = _NetA()
        result = load_state_dict_checked(target, form)
        assert result.missing_keys == [] and result.unexpected_keys == []
        assert torch.equal(target.head.weight, source.head.weight)
    atomic_save({"network": "_NetA", "model": source.state_dict()}, tmp_path / "a.pt")
    target = _NetA()
    load_state_dict_checked(target, tmp_path / "a.pt")
    assert torch.equal(target.encoder.bias, source.encoder.bias)


def test_load_state_dict_checked_names_other_network(tmp_path):
    atomic_save({"network": "VLSANet", "model": _NetA().state_dict()}, tmp_path / "v.pt")
    with pytest.raises(CheckpointError, match="saved for network 'VLSANet'.*'TGCNet'"):
        load_state_dict_checked(_NetA(), tmp_path / "v.pt", expected_network="TGCNet")
    with pytest.raises(CheckpointError) as info:
        load_state_dict_checked(_NetA(), _NetB().state_dict())
    message = str(info.value)
    assert "4 of the network's 4 keys are missing" in message
    assert "2 checkpoint keys are unknown" in message
    assert "backbone" in message and "another network" in message


def test_load_state_dict_checked_shape_mismatch_and_non_strict():
    with pytest.raises(CheckpointError, match="another shape.*encoder.weight"):
        load_state_dict_checked(_NetA(width=3), _NetA(width=5).state_dict(), strict=False)
    partial = {k: v for k, v in _NetA().state_dict().items() if k.startswith("encoder")}
    with pytest.raises(CheckpointError, match="2 of the network's 4 keys are missing"):
        load_state_dict_checked(_NetA(), partial)
    result = load_state_dict_checked(_NetA(), partial, strict=False)
    assert sorted(result.missing_keys) == ["head.bias", "head.weight"]


def test_load_state_dict_checked_without_weights():
    with pytest.raises(CheckpointError, match="no network weights.*epoch"):
        load_state_dict_checked(_NetA(), {"epoch": 1, "optimizer": {}})


def test_check_within_root(tmp_path):
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    (root / "img" / "a.png").write_bytes(b"x")
    assert check_within_root("img/a.png", root) == os.path.realpath(root / "img" / "a.png")
    assert check_within_root(root / "img" / "a.png", root) == os.path.realpath(root / "img" / "a.png")
    outside = tmp_path / "secret.txt"
    outside.write_text("s")
    with pytest.raises(PathOutsideRootError, match="outside the dataset root"):
        check_within_root("../secret.txt", root)
    with pytest.raises(ValueError):
        check_within_root(outside, root)
    os.symlink(outside, root / "img" / "link.png")
    with pytest.raises(ValueError, match="link.png"):
        check_within_root("img/link.png", root)
    (tmp_path / "data_evil").mkdir()
    with pytest.raises(ValueError):
        check_within_root("../data_evil/x.png", root)


def test_sha256_file(tmp_path):
    path = tmp_path / "blob"
    data = bytes(range(256)) * 10
    path.write_bytes(data)
    assert sha256_file(path, chunk_size=100) == hashlib.sha256(data).hexdigest()


def test_atomic_write_path_for_writers_that_take_a_file_name(tmp_path):
    target = tmp_path / "out" / "mask.nii.gz"
    with atomic_write_path(target, suffix=".nii.gz") as tmp:
        assert os.path.dirname(tmp) == str(target.parent) and tmp.endswith(".tmp.nii.gz")
        with open(tmp, "wb") as f:  # a writer that opens the path itself
            f.write(b"mask")
    assert target.read_bytes() == b"mask"
    with pytest.raises(FileExistsError, match="mask.nii.gz"):
        with atomic_write_path(target) as tmp:
            pass
    with pytest.raises(OSError, match="disk full"):
        with atomic_write_path(target, overwrite=True) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"partial")
            raise OSError("disk full")
    assert target.read_bytes() == b"mask" and os.listdir(target.parent) == ["mask.nii.gz"]

"""Output folder safety of the synthetic data generators: staging, refusing to overwrite, cleanup after failure."""

import os

import pytest
from monai_ext.demo import MARKER_FILE, chest_xray, make_cardiac_dataset, make_chest_xray_dataset, make_fundus_dataset

TINY = dict(n_train=1, n_val=0, n_test=0, image_size=32)


def test_refuses_non_empty_output_without_overwrite(tmp_path):
    out = tmp_path / "data"
    make_chest_xray_dataset(out, seed=0, **TINY)
    before = (out / "Train_Folder" / "img" / "train_0000.png").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True") as error:
        make_chest_xray_dataset(out, seed=1, **TINY)
    assert str(out) in str(error.value)
    assert (out / "Train_Folder" / "img" / "train_0000.png").read_bytes() == before


def test_overwrite_replaces_an_earlier_synthetic_dataset_entirely(tmp_path):
    out = tmp_path / "data"
    make_fundus_dataset(out, n_per_domain=1, image_size=32, domains=["domain_a", "domain_b"])
    make_fundus_dataset(out, n_per_domain=1, image_size=32, domains=["domain_c"], overwrite=True)
    assert sorted(os.listdir(out)) == sorted(["domain_c", "domains.json", MARKER_FILE])
    assert [p for p in os.listdir(tmp_path) if p != "data"] == []  # no staging or old folders left behind


def test_overwrite_never_deletes_a_foreign_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not written by a synthetic data generator"):
        make_cardiac_dataset(out, n_per_domain=1, image_size=32, slices=1, overwrite=True)
    assert os.listdir(out) == ["notes.txt"]


def test_empty_folder_is_used_and_a_file_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    make_chest_xray_dataset(empty, **TINY)
    assert (empty / "datalist.json").is_file()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        make_chest_xray_dataset(a_file, overwrite=True, **TINY)


def test_failure_midway_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def fail_on_second(rng, image_size, n_lesions):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return original(rng, image_size, n_lesions)

    original = chest_xray.render_chest_xray
    monkeypatch.setattr(chest_xray, "render_chest_xray", fail_on_second)
    with pytest.raises(RuntimeError, match="disk full"):
        make_chest_xray_dataset(tmp_path / "data", n_train=3, n_val=0, n_test=0, image_size=32)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs", [{"n_train": -1}, {"n_val": 1.5}, {"image_size": 16}, {"n_test": True}])
def test_bad_counts_and_sizes_are_value_errors(tmp_path, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        make_chest_xray_dataset(tmp_path / "data", **{**TINY, **kwargs})

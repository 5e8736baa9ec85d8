"""LViT layout reader (load_lvit_split / validate_lvit_split) and the lvit_to_datalist script."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from monai_ext.data import (
    DatasetValidationError,
    find_lvit_text_table,
    load_lvit_split,
    load_text_datalist,
    validate_lvit_split,
)
from PIL import Image

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))
import lvit_to_datalist  # noqa: E402


def _png(path, value=0, size=8):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)


def make_split(root, split, names, rows=None, table="csv", table_in_folder=True):
    """LViT split with an image and a mask per name and a text table (default: one row per mask)."""
    folder = os.path.join(root, f"{split}_Folder")
    for name in names:
        _png(os.path.join(folder, "img", f"{name}.png"), 100)
        _png(os.path.join(folder, "labelcol", f"mask_{name}.png"), 255)
    if rows is None:
        rows = [(f"mask_{name}.png", f"report of {name}") for name in names]
    frame = pd.DataFrame(rows) if isinstance(rows[0], dict) else pd.DataFrame(rows, columns=["Image", "Description"])
    table_path = os.path.join(folder if table_in_folder else root, f"{split}_text.{table}")
    if table == "csv":
        frame.to_csv(table_path, index=False)
    else:
        frame.to_excel(table_path, index=False)
    return folder


def test_load_split_records_sorted_absolute(tmp_path):
    make_split(tmp_path, "Train", ["b_2", "a_1", "c_3"])
    records = load_lvit_split(tmp_path, "Train")
    assert [r["name"] for r in records] == ["a_1", "b_2", "c_3"]
    first = records[0]
    assert first["image"] == os.path.join(tmp_path, "Train_Folder", "img", "a_1.png")
    assert first["label"] == os.path.join(tmp_path, "Train_Folder", "labelcol", "mask_a_1.png")
    assert first["text"] == "report of a_1"
    assert all(os.path.isabs(r["image"]) and os.path.isfile(r["label"]) for r in records)
    # split aliases map to the same folder
    assert load_lvit_split(tmp_path, "training") == records


def test_xlsx_table_at_root_and_rows_naming_images(tmp_path):
    make_split(
        tmp_path,
        "Test",
        ["x", "y"],
        rows=[("mask_x.png", "report of x"), ("y.png", "y")],
        table="xlsx",
        table_in_folder=False,
    )
    assert find_lvit_text_table(tmp_path, "test") == os.path.join(tmp_path, "Test_text.xlsx")
    records = load_lvit_split(tmp_path, "Test")
    assert [(r["text"], os.path.basename(r["label"])) for r in records] == [
        ("report of x", "mask_x.png"),
        ("y", "mask_y.png"),
    ]


def test_all_problems_reported_at_once(tmp_path):
    names = ["ok", "no_text", "blank", "dup_conflict", "orphan_img"]
    rows = [
        ("mask_ok.png", "fine"),
        ("mask_blank.png", "   "),
        ("mask_dup_conflict.png", "first"),
        ("mask_dup_conflict.png", "second"),
        ("mask_ghost.png", "a row without files"),
        ("../../../escape.png", "outside"),
        ("mask_orphan_img.png", "x"),
    ]
    folder = make_split(tmp_path, "Val", names, rows=rows)
    os.remove(os.path.join(folder, "labelcol", "mask_orphan_img.png"))
    _png(os.path.join(folder, "labelcol", "mask_lonely.png"), 255)

    with pytest.raises(DatasetValidationError) as info:
        load_lvit_split(tmp_path, "Val")
    problems = info.value.report.problems
    assert problems["mask_without_text"] == ["mask_no_text.png"]
    assert problems["empty_description"] == ["mask_blank.png"]
    assert problems["conflicting_duplicates"] == ["mask_dup_conflict.png (2 rows)"]
    assert sorted(problems["text_without_files"]) == ["mask_ghost.png", "mask_orphan_img.png"]
    assert problems["image_without_mask"] == ["orphan_img.png"]
    assert problems["mask_without_image"] == ["mask_lonely.png"]
    assert "../../../escape.png" in problems["path_outside_root"][0]
    message = str(info.value)
    assert "mask_no_text.png" in message and "mask_ghost.png" in message and "escape.png" in message

    # skip mode: only the valid record, and the report is logged, not silently dropped
    records = load_lvit_split(tmp_path, "Val", on_error="skip")
    assert [r["name"] for r in records] == ["ok"]
    assert validate_lvit_split(tmp_path, "Val").records == records


def test_train_and_val_share_lvits_train_val_table(tmp_path):
    """LViT's training code reads QaTa-COV19's reports of Train and Val from Train_Folder/Train_Val_text.xlsx."""
    make_split(tmp_path, "Train", ["covid_1", "covid_2"], rows=[("mask_covid_9.png", "x")])
    make_split(tmp_path, "Val", ["covid_3"], rows=[("mask_covid_9.png", "x")])
    for split in ("Train", "Val"):
        os.remove(tmp_path / f"{split}_Folder" / f"{split}_text.csv")
    rows = [(f"mask_covid_{k}.png", f"report {k}") for k in (1, 2, 3)]
    pd.DataFrame(rows, columns=["Image", "Description"]).to_excel(
        tmp_path / "Train_Folder" / "Train_Val_text.xlsx", index=False
    )
    assert find_lvit_text_table(tmp_path, "Val") == str(tmp_path / "Train_Folder" / "Train_Val_text.xlsx")
    assert [r["text"] for r in load_lvit_split(tmp_path, "Train")] == ["report 1", "report 2"]
    assert [r["text"] for r in load_lvit_split(tmp_path, "Val")] == ["report 3"]
    # a row naming a mask of neither split is still reported
    rows.append(("mask_covid_4.png", "report 4"))
    pd.DataFrame(rows, columns=["Image", "Description"]).to_excel(
        tmp_path / "Train_Folder" / "Train_Val_text.xlsx", index=False
    )
    with pytest.raises(DatasetValidationError) as info:
        load_lvit_split(tmp_path, "Val")
    assert info.value.report.problems == {"text_without_files": ["mask_covid_4.png"]}


def test_masks_named_like_images_and_a_text_column(tmp_path):
    """MosMedData+ names a mask like its image; some copies of its tables call the report column 'text'."""
    folder = tmp_path / "Test_Folder"
    for name in ("slice_1.png", "slice_2.png"):
        _png(str(folder / "img" / name), 100)
        _png(str(folder / "labelcol" / name), 255)
    pd.DataFrame([("slice_1.png", "one"), ("slice_2.png", "two")], columns=["Image", "text"]).to_excel(
        folder / "Test_text.xlsx", index=False
    )
    records = load_lvit_split(tmp_path, "Test")
    assert [(os.path.basename(r["label"]), r["text"]) for r in records] == [
        ("slice_1.png", "one"),
        ("slice_2.png", "two"),
    ]


def test_expected_size_refuses_another_split_even_when_skipping(tmp_path):
    make_split(tmp_path, "Test", ["a", "b", "c"])
    assert len(load_lvit_split(tmp_path, "Test", expected_size=3)) == 3
    for on_error in ("raise", "skip"):
        with pytest.raises(DatasetValidationError) as info:
            load_lvit_split(tmp_path, "Test", on_error=on_error, expected_size=2113)
        assert info.value.report.problems == {"split_size": ["3 valid item(s), the benchmark split has 2113"]}
        assert "published split" in str(info.value) and "[Test]" in str(info.value)


def test_skip_mode_logs_report(tmp_path, caplog):
    make_split(tmp_path, "Train", ["a", "b"], rows=[("mask_a.png", "text a")])
    with caplog.at_level(logging.WARNING, logger="monai_ext.data.lvit"):
        records = load_lvit_split(tmp_path, "Train", on_error="skip")
    assert [r["name"] for r in records] == ["a"]
    assert "mask_b.png" in caplog.text


def test_identical_duplicates_collapsed_with_warning(tmp_path, caplog):
    make_split(tmp_path, "Train", ["a"], rows=[("mask_a.png", "same"), ("mask_a.png", "same")])
    with caplog.at_level(logging.WARNING, logger="monai_ext.data.lvit"):
        records = load_lvit_split(tmp_path, "Train")
    assert len(records) == 1 and records[0]["text"] == "same"
    assert "identical rows collapsed" in caplog.text


def test_missing_columns_name_table_and_columns_found(tmp_path):
    make_split(tmp_path, "Train", ["a"], rows=[{"Image": "mask_a.png", "Report": "t"}])
    with pytest.raises(DatasetValidationError) as info:
        load_lvit_split(tmp_path, "Train", on_error="skip")  # fatal even when skipping
    (entry,) = info.value.report.problems["missing_columns"]
    assert "Train_text.csv" in entry and "Description" in entry and "Report" in entry


def test_missing_table_and_folder(tmp_path):
    os.makedirs(tmp_path / "Train_Folder" / "img")
    with pytest.raises(DatasetValidationError) as info:
        load_lvit_split(tmp_path, "Train")
    problems = info.value.report.problems
    assert "Train_text.xlsx" in problems["missing_table"][0]
    assert "labelcol" in problems["missing_folder"][0]
    with pytest.raises(ValueError, match="Unknown LViT split"):
        load_lvit_split(tmp_path, "holdout")
    with pytest.raises(FileNotFoundError):
        load_lvit_split(tmp_path / "nope", "Train")


def test_symlink_out_of_root_refused(tmp_path):
    root = tmp_path / "data"
    folder = make_split(root, "Train", ["a"], rows=[("mask_a.png", "t"), ("mask_b.png", "t")])
    _png(str(tmp_path / "outside.png"), 255)
    _png(os.path.join(folder, "img", "b.png"), 1)
    os.symlink(tmp_path / "outside.png", os.path.join(folder, "labelcol", "mask_b.png"))
    report = validate_lvit_split(root, "Train")
    # both the listed file and the table row leading to it are reported
    assert sorted(report.problems["path_outside_root"]) == [
        os.path.join("Train_Folder", "labelcol", "mask_b.png"),
        "Train_text.csv row 3: 'mask_b.png'",
    ]
    assert [r["name"] for r in report.records] == ["a"]


def test_script_writes_loadable_datalist(tmp_path, capsys):
    root = tmp_path / "qata"
    make_split(root, "Train", ["a", "b"])
    make_split(root, "Test", ["c"])
    output = root / "datalist.json"
    counts = lvit_to_datalist.main(root=str(root), output=str(output), splits="Train,Test")
    assert counts == {"training": 2, "test": 1}
    assert "training: 2 item(s)" in capsys.readouterr().out
    content = json.loads(output.read_text())
    assert content["test"][0]["image"] == "Test_Folder/img/c.png"  # relative to the root
    loaded = load_text_datalist(output, key="training", base_dir=root)
    assert loaded == load_lvit_split(root, "Train")
    with pytest.raises(FileExistsError):
        lvit_to_datalist.main(root=str(root), output=str(output), splits="Train,Test")


def test_script_cli_error_and_skip(tmp_path, capsys):
    root = tmp_path / "qata"
    make_split(root, "Train", ["a", "b"], rows=[("mask_a.png", "t")])
    output = tmp_path / "out.json"
    command = [sys.executable, os.path.join(REPO_ROOT, "scripts", "lvit_to_datalist.py"), "--root", str(root)]
    failed = subprocess.run(
        command + ["--output", str(output), "--splits", "Train"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert failed.returncode == 1
    assert "mask_b.png" in failed.stderr and "Traceback" not in failed.stderr
    assert not output.exists()

    counts = lvit_to_datalist.main(root=str(root), output=str(output), splits=("Train",), on_error="skip")
    assert counts == {"training": 1}
    assert "training: 1 item(s) (1 problem(s) skipped)" in capsys.readouterr().out
    assert [item["name"] for item in json.loads(output.read_text())["training"]] == ["a"]
    # paths relative to the dataset root even though the JSON lies outside it
    assert load_text_datalist(output, base_dir=root)[0]["image"] == os.path.join(root, "Train_Folder", "img", "a.png")


def test_script_reads_every_image_and_reports_all_splits_together(tmp_path, capsys):
    root = tmp_path / "qata"
    train = make_split(root, "Train", ["a", "b"])
    val = make_split(root, "Val", ["c", "d", "e"])
    with open(os.path.join(train, "img", "b.png"), "r+b") as f:
        f.truncate(20)  # a truncated download
    _png(os.path.join(val, "labelcol", "mask_c.png"), 255, size=6)  # another size than its image
    Image.fromarray(
        np.dstack([np.full((8, 8), 255, np.uint8), np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)])
    ).save(
        os.path.join(val, "labelcol", "mask_d.png")
    )  # a colour mask
    output = tmp_path / "datalist.json"
    with pytest.raises(DatasetValidationError) as info:
        lvit_to_datalist.main(root=str(root), output=str(output), splits="Train,Val")
    message = str(info.value)
    assert "[Train, Val]: 2 valid record(s), 3 problem(s)" in message and "unloadable_item" in message
    assert "Train: b: ImageReadError" in message and "b.png" in message
    assert "Val: c: ShapeMismatchError" in message and "Val: d: ImageReadError" in message and "colour" in message
    assert not output.exists()
    counts = lvit_to_datalist.main(root=str(root), output=str(output), splits="Train,Val", on_error="skip")
    assert counts == {"training": 1, "validation": 1}
    unchecked = tmp_path / "unchecked.json"
    assert lvit_to_datalist.main(root=str(root), output=str(unchecked), splits="Train,Val", check_images=False) == {
        "training": 2,
        "validation": 3,
    }

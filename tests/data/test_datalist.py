"""Decathlon datalists with text (load/validate/write) and RandomTextd."""

from __future__ import annotations

import json
import os

import pytest
from monai.transforms import Compose
from monai_ext.data import DatasetValidationError, RandomTextd, load_text_datalist, write_text_datalist


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x")


def _write_json(path, content):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f)


def test_load_resolves_paths_and_keeps_text(tmp_path):
    for name in ("img/a.png", "lab/a.png", "img/b.png", "zones/a.png", "report"):
        _touch(str(tmp_path / name))
    _write_json(
        tmp_path / "datalist.json",
        {
            "training": [
                {
                    "image": "img/a.png",
                    "label": "lab/a.png",
                    "zone_map": "zones/a.png",
                    "text": ["left lung", "left lower zone"],
                },
                # a text that happens to name an existing file must stay text
                {"image": "img/b.png", "text": "report"},
            ],
            "test": ["img/b.png"],
        },
    )
    records = load_text_datalist(tmp_path / "datalist.json", key="training")
    assert records[0] == {
        "image": os.path.join(tmp_path, "img/a.png"),
        "label": os.path.join(tmp_path, "lab/a.png"),
        "zone_map": os.path.join(tmp_path, "zones/a.png"),  # other existing paths are resolved as MONAI does
        "text": ["left lung", "left lower zone"],
        "name": "a",  # the image's file stem, where the datalist gives no name
    }
    assert records[1]["text"] == "report"
    test_records = load_text_datalist(tmp_path / "datalist.json", key="test")
    assert test_records == [{"image": os.path.join(tmp_path, "img/b.png"), "name": "b"}]


def test_all_invalid_items_reported_together(tmp_path):
    base = tmp_path / "data"
    _touch(str(base / "ok.png"))
    _touch(str(tmp_path / "secret.png"))
    _write_json(
        tmp_path / "list.json",
        {
            "training": [
                {"image": "ok.png", "text": ""},
                {"image": "ok.png", "text": ["fine", 3]},
                {"image": "ok.png", "text": []},
                {"image": "../secret.png", "text": "t"},
                {"image": "missing.png", "label": "missing_mask.png", "text": "t"},
                {"label": "ok.png"},
                {"image": "ok.png", "text": "valid"},
            ]
        },
    )
    with pytest.raises(DatasetValidationError) as info:
        load_text_datalist(tmp_path / "list.json", base_dir=base)
    report = info.value.report
    assert len(report.problems["invalid_text"]) == 3
    assert "../secret.png" in report.problems["path_outside_root"][0]
    assert sorted(report.problems["missing_file"]) == [str(base / "missing.png"), str(base / "missing_mask.png")]
    assert len(report.problems["invalid_item"]) == 1
    assert len(report.records) == 1
    assert "missing_mask.png" in str(info.value)


def test_bad_file_and_key_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_text_datalist(tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_text_datalist(tmp_path / "broken.json")
    _write_json(tmp_path / "d.json", {"training": []})
    with pytest.raises(ValueError, match=r"no key 'validation'.*training"):
        load_text_datalist(tmp_path / "d.json", key="validation")


def test_write_round_trip_relative_and_atomic(tmp_path):
    for name in ("img/a.png", "lab/a.png"):
        _touch(str(tmp_path / name))
    records = {"training": [{"image": str(tmp_path / "img/a.png"), "label": str(tmp_path / "lab/a.png"), "text": "t"}]}
    out = tmp_path / "datalist.json"
    write_text_datalist(records, out)
    assert json.loads(out.read_text())["training"][0]["image"] == "img/a.png"
    assert load_text_datalist(out) == [{**r, "name": "a"} for r in records["training"]]  # name: the file stem
    with pytest.raises(FileExistsError):
        write_text_datalist(records, out)
    write_text_datalist([{"image": str(tmp_path / "img/a.png"), "text": "u"}], out, key="test", overwrite=True)
    assert json.loads(out.read_text()) == {"test": [{"image": "img/a.png", "text": "u"}]}

    outside = [{"image": "/elsewhere/x.png", "text": "t"}, {"image": str(tmp_path / "img/a.png"), "text": " "}]
    with pytest.raises(DatasetValidationError) as info:
        write_text_datalist(outside, tmp_path / "sub" / "other.json")
    assert set(info.value.report.problems) == {"path_outside_root", "invalid_text"}
    assert not (tmp_path / "sub" / "other.json").exists()


def test_random_text_training_seeded_and_eval_first():
    options = [f"report {i}" for i in range(5)]
    draw = RandomTextd(keys="text").set_random_state(seed=3)
    picks = [draw({"text": options})["text"] for _ in range(30)]
    assert set(picks) <= set(options) and len(set(picks)) > 1
    again = RandomTextd(keys="text").set_random_state(seed=3)
    assert [again({"text": options})["text"] for _ in range(30)] == picks
    # Compose passes its seed on (as a derived seed)
    composed = [Compose([RandomTextd(keys="text")]).set_random_state(seed=11) for _ in range(2)]
    assert [composed[0]({"text": options})["text"] for _ in range(30)] == [
        composed[1]({"text": options})["text"] for _ in range(30)
    ]

    evaluate = RandomTextd(keys="text", training=False)
    assert {evaluate({"text": options})["text"] for _ in range(5)} == {"report 0"}
    assert evaluate({"text": "single"})["text"] == "single"


def test_random_text_rejects_bad_values():
    draw = RandomTextd(keys="text")
    with pytest.raises(ValueError, match="case_7"):
        draw({"text": [], "name": "case_7"})
    with pytest.raises(ValueError, match="non-string"):
        draw({"text": ["ok", None]})
    with pytest.raises(ValueError, match="string or a non-empty list"):
        draw({"text": 5})

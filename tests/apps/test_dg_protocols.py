"""Dry runs of the published DG protocols (scripts/evaluate_dg.py --protocol) on the demo helpers' stand-ins of the
releases, end to end on the code path a user with the real data takes: the release read with the method's split,
the label map checked, training on the source, per-volume (cardiac) or per-image (fundus) evaluation of the targets."""

import csv
import json

import pytest
from monai_ext.apps import DG_PROTOCOLS
from monai_ext.demo import make_ccsdg_riga_release, make_slaug_mscmrseg_release
from script_loader import load_script

TINY = {"max_epochs": 1, "demo": True, "overrides": {"num_workers": 0, "decoder_channels": 16, "num_bases": 8}}


def test_mscmrseg_slaug_dry_run(tmp_path):
    release = tmp_path / "SLAug" / "data" / "cardiac" / "processed"
    make_slaug_mscmrseg_release(release, image_size=32, slices=1)
    out = tmp_path / "dg"
    script = load_script("evaluate_dg")
    script.main(protocol="mscmrseg_slaug", data_root=str(release), output_dir=str(out), batch_size=16, **TINY)
    summary = json.loads((out / "dg_results.json").read_text())
    assert (summary["source"], summary["targets"], summary["target_key"]) == ("bSSFP", ["LGE"], "test")
    assert summary["aggregation"] == "per volume"
    assert summary["protocol"]["name"] == "mscmrseg_slaug" and summary["protocol"]["deviations"] == {}
    assert summary["protocol"]["image_size_used"] == 32  # the release's own slice size: no resizing
    overrides = summary["overrides"]
    assert (overrides["label_orig_values"], overrides["label_target_values"]) == ([1, 2], [2, 1])
    assert (overrides["train_key"], overrides["val_key"], overrides["eval_per_volume"]) == (
        "training",
        "validation",
        True,
    )
    with open(out / "dg_results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["target_domain"], r["num_volumes"]) for r in rows] == [("LGE", "40"), ("mean", "40")]
    assert {"LV Dice", "MYO Dice", "RV Dice", "mean Dice", "mean HD95"} <= set(rows[0])
    with open(out / "full" / "eval" / "LGE" / "volumes" / "per_volume.csv") as f:
        assert [r["name"] for r in csv.DictReader(f)] == [f"LGE_{i}" for i in range(6, 46)]  # SLAug's LGE test list
    with open(out / "dg_results_per_slice.csv") as f:
        assert [r["num_slices"] for r in csv.DictReader(f)] == ["40", "40"]
    table = (out / "dg_results.md").read_text()
    assert "## Per volume" in table and "## Per slice" in table and "| full | LGE | 40 |" in table


def test_riga_ccsdg_dry_run(tmp_path):
    release = tmp_path / "RIGAPlus"
    make_ccsdg_riga_release(release, n_train=4, n_test=2, image_size=64)
    out = tmp_path / "dg"
    script = load_script("evaluate_dg")
    script.main(
        protocol="riga_ccsdg", source="Magrabia", data_root=str(release), output_dir=str(out), image_size=64,
        batch_size=4, **TINY,
    )  # fmt: skip
    summary = json.loads((out / "dg_results.json").read_text())
    assert summary["source"] == "Magrabia" and summary["targets"] == [
        "MESSIDOR_Base1",
        "MESSIDOR_Base2",
        "MESSIDOR_Base3",
    ]
    assert summary["aggregation"] == "per image" and summary["target_key"] == "test"
    # The demo's 64-pixel stand-in is run at 64, not the protocol's 512: recorded as a deviation.
    assert summary["protocol"]["deviations"] == {"image_size": {"protocol": 512, "used": 64}}
    assert (summary["overrides"]["label_orig_values"], summary["overrides"]["val_key"]) == ([255, 128], "test")
    with open(out / "dg_results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["target_domain"], r["num_images"]) for r in rows] == [
        ("MESSIDOR_Base1", "2"), ("MESSIDOR_Base2", "2"), ("MESSIDOR_Base3", "2"), ("mean", "6"),
    ]  # fmt: skip
    with open(out / "full" / "eval" / "MESSIDOR_Base2" / "per_image.csv") as f:
        assert [r["name"] for r in csv.DictReader(f)] == ["image5", "image6"]  # the _test list, not the whole site
    assert {"optic disc Dice", "optic cup Dice"} <= set(rows[0])


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"protocol": "riga"}, "protocol must be one of \\['mscmrseg_slaug', 'riga_ccsdg'\\]"),
        ({"protocol": "riga_ccsdg"}, "runs on its release: pass --data_root.*riga_ccsdg_release"),
        ({"protocol": "riga_ccsdg", "data_root": "x", "label_map": "refuge"}, "fixes --label_map refuge otherwise"),
        ({"protocol": "riga_ccsdg", "data_root": "x", "source": "MESSIDOR_Base1"}, "sources: BinRushed, Magrabia"),
        ({"protocol": "mscmrseg_slaug", "data_root": "x", "task": "fundus"}, "fixes --task fundus otherwise"),
        ({"protocol": "mscmrseg_slaug", "data_root": "x", "targets": "LGE,T2"}, "fixes --targets LGE,T2"),
    ],
)
def test_settings_that_contradict_a_protocol_are_refused_before_any_work(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        load_script("evaluate_dg").main(output_dir=str(tmp_path / "dg"), **arguments)
    assert not (tmp_path / "dg").exists()


def test_protocols_name_the_code_they_follow():
    for protocol in DG_PROTOCOLS.values():
        assert protocol.follows and protocol.aggregation in ("per volume", "per image")
        assert json.dumps(protocol.summary())

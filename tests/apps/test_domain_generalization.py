"""Domain generalisation: record splits, data set layouts (synthetic, folder pairs, DoFE-style, cardiac volumes),
region reports for the regions of the bundle configs, the label map checked before any training, and the evaluate_dg
command on a tiny setting."""

import csv
import json
import math
import os

import nibabel as nib
import numpy as np
import pytest
from monai_ext.apps import domain_generalization as dg
from monai_ext.data import (
    LabelMapError,
    evaluation_records,
    prepare_cardiac_domains,
    prepare_fundus_domains,
    training_records,
)
from monai_ext.demo import MSCMRSEG_LABEL_MAP, make_demo_data
from monai_ext.metrics import SegmentationReport
from PIL import Image
from script_loader import load_script

BUNDLE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bundles", "vlsanet"
)


def _png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def _datalist(folder, n_train, n_test):
    items = []
    for i in range(n_train + n_test):
        _png(os.path.join(folder, "images", f"{i}.png"), np.full((8, 8, 3), i))
        _png(os.path.join(folder, "masks", f"{i}.png"), np.zeros((8, 8)))
        items.append({"image": f"images/{i}.png", "label": f"masks/{i}.png"})
    with open(os.path.join(folder, "datalist.json"), "w") as f:
        json.dump({"training": items[:n_train], "test": items[n_train:]}, f)
    return os.path.join(folder, "datalist.json")


def test_training_records_hold_out_the_end_of_the_source_training_list(tmp_path):
    path = _datalist(str(tmp_path), n_train=10, n_test=2)
    train = training_records(path, val_fraction=0.2, part="train")
    val = training_records(path, val_fraction=0.2, part="val")
    assert [os.path.basename(r["image"]) for r in train] == [f"{i}.png" for i in range(8)]
    assert [os.path.basename(r["image"]) for r in val] == ["8.png", "9.png"]
    assert len(training_records(path, val_key="test", part="val")) == 2
    assert len(evaluation_records(path, "test")) == 2
    assert len(evaluation_records(path, "all")) == 12
    with pytest.raises(ValueError, match="part"):
        training_records(path, part="test")


def test_regions_come_from_the_bundle_configs_that_run():
    assert dg.evaluation_regions(BUNDLE, ["train.json"]) == {"optic disc": [1, 2], "optic cup": [2]}
    assert dg.evaluation_regions(BUNDLE, ["train.json", "cardiac.json"]) == {"LV": [1], "MYO": [2], "RV": [3]}
    overridden = dg.evaluation_regions(BUNDLE, ["train.json"], {"eval_regions": {"disc": [1, 2]}})
    assert overridden == {"disc": [1, 2]}
    assert not dg.evaluates_per_volume(BUNDLE, ["train.json"])
    assert dg.evaluates_per_volume(BUNDLE, ["train.json", "cardiac.json"])
    assert not dg.evaluates_per_volume(BUNDLE, ["train.json", "cardiac.json"], {"eval_per_volume": False})
    assert dg.LABEL_MAPS["mscmrseg"] == MSCMRSEG_LABEL_MAP


def test_region_report_unions_label_values(tmp_path):
    report = SegmentationReport(num_classes=3, regions=dg.evaluation_regions(BUNDLE, ["train.json"]))
    label = np.zeros((16, 16), int)
    label[4:12, 4:12] = 1  # disc rim
    label[6:10, 6:10] = 2  # cup
    pred = np.zeros_like(label)
    pred[4:12, 4:12] = 1  # disc right, cup predicted as rim
    report.add("eye", pred, label)
    report.write(tmp_path)
    with open(tmp_path / "report.json") as f:
        report = json.load(f)
    assert report["region_names"] == ["optic disc", "optic cup"]
    assert report["per_image_mean"]["optic disc"]["dice"] == pytest.approx(1.0)
    assert report["per_image_mean"]["optic cup"]["dice"] == 0.0
    assert report["per_image_mean"]["mean_over_regions"]["dice"] == pytest.approx(0.5)
    assert report["counts"]["optic cup"]["pred_empty"] == 1
    with open(tmp_path / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["name"] == "eye" and float(rows[0]["optic disc_dice"]) == pytest.approx(1.0)
    assert "| optic cup | 2 |" in (tmp_path / "report.md").read_text()


def test_prepare_fundus_folder_layouts(tmp_path):
    root = tmp_path / "Fundus"
    # generic layout with mask_ prefixes; DoFE layout with train/test ROIs; a ready datalist.
    for i in range(3):
        _png(root / "site1" / "images" / f"a{i}.png", np.zeros((8, 8, 3)))
        _png(root / "site1" / "masks" / f"mask_a{i}.png", np.full((8, 8), 255))
    for split, n in (("train", 2), ("test", 1)):
        for i in range(n):
            _png(root / "Domain2" / split / "ROIs" / "image" / f"{split}{i}.png", np.zeros((8, 8, 3)))
            _png(root / "Domain2" / split / "ROIs" / "mask" / f"{split}{i}.png", np.full((8, 8), 128))
    _datalist(str(root / "synthetic"), n_train=2, n_test=1)
    domains = prepare_fundus_domains(str(root), str(tmp_path / "work"))
    assert sorted(domains) == ["Domain2", "site1", "synthetic"]
    assert len(evaluation_records(domains["site1"]["datalist"], "all", domains["site1"]["base_dir"])) == 3
    dofe = domains["Domain2"]
    assert len(evaluation_records(dofe["datalist"], "training", dofe["base_dir"])) == 2
    test = evaluation_records(dofe["datalist"], "test", dofe["base_dir"])
    assert [os.path.basename(r["label"]) for r in test] == ["test0.png"]
    assert domains["synthetic"]["datalist"] == str(root / "synthetic" / "datalist.json")
    _png(root / "site1" / "images" / "orphan.png", np.zeros((8, 8, 3)))
    with pytest.raises(FileNotFoundError, match="no mask"):
        prepare_fundus_domains(str(root), str(tmp_path / "work2"), domains=["site1"])


def test_prepare_cardiac_volumes_are_sliced(tmp_path):
    root = tmp_path / "mscmrseg"
    for domain in ("C0", "LGE"):
        for case in ("patient1", "patient2"):
            os.makedirs(root / domain / "images", exist_ok=True)
            os.makedirs(root / domain / "labels", exist_ok=True)
            image = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
            label = np.zeros((16, 16, 3), np.int16)
            label[4:8, 4:8] = 500
            nib.save(nib.Nifti1Image(image, np.eye(4)), str(root / domain / "images" / f"{case}.nii.gz"))
            nib.save(nib.Nifti1Image(label, np.eye(4)), str(root / domain / "labels" / f"{case}_manual.nii.gz"))
    domains = prepare_cardiac_domains(str(root), str(tmp_path / "work"))
    assert sorted(domains) == ["C0", "LGE"]
    records = evaluation_records(domains["LGE"]["datalist"], "all", domains["LGE"]["base_dir"])
    assert len(records) == 6  # 2 volumes x 3 slices
    assert {r["slice_index"] for r in records} == {0, 1, 2}
    assert nib.load(records[0]["label"]).shape[:2] == (16, 16)


def test_evaluate_dg_command_on_tiny_fundus_demo(tmp_path):
    script = load_script("evaluate_dg")
    out = tmp_path / "dg"
    table_path = script.main(
        task="fundus", output_dir=str(out), variants="full,no_em_no_text", max_epochs=1, image_size=64,
        n_per_domain=4, batch_size=2,
    )  # fmt: skip
    assert table_path == str(out / "dg_results.md")
    table = (out / "dg_results.md").read_text()
    assert "| variant | target_domain | num_images | optic disc Dice | optic disc HD95 | optic cup Dice" in table
    with open(out / "dg_results.csv") as f:
        rows = list(csv.DictReader(f))
    expected = [(v, d) for v in ("full", "no_em_no_text") for d in ("domain_b", "domain_c", "domain_d", "mean")]
    assert [(r["variant"], r["target_domain"]) for r in rows] == expected
    assert list(rows[0]) == [
        "variant", "target_domain", "num_images", "optic disc Dice", "optic disc HD95", "optic cup Dice",
        "optic cup HD95", "mean Dice", "mean HD95",
    ]  # fmt: skip
    for row in rows:
        assert row["num_images"] == ("12" if row["target_domain"] == "mean" else "4")
        for key in ("optic disc Dice", "optic cup Dice", "mean Dice"):
            assert 0.0 <= float(row[key]) <= 100.0
        # HD95 is undefined only where every prediction of a region is empty; then it is left blank, never NaN.
        assert all(not math.isnan(float(row[k])) for k in row if k.endswith("HD95") and row[k])
    assert (out / "full" / "models" / "model.pt").is_file()
    summary = json.loads((out / "dg_results.json").read_text())
    assert summary["source"] == "domain_a" and summary["targets"] == ["domain_b", "domain_c", "domain_d"]
    with pytest.raises(FileExistsError):
        script.main(task="fundus", output_dir=str(out))
    assert summary["regions"] == {"optic disc": [1, 2], "optic cup": [2]}


def test_evaluate_dg_command_refuses_an_unknown_label_map_before_any_work(tmp_path):
    script = load_script("evaluate_dg")
    with pytest.raises(
        ValueError, match="label_map must be one of \\['index', 'refuge', 'ccsdg', 'mscmrseg', 'slaug'\\]"
    ):
        script.main(task="cardiac", output_dir=str(tmp_path / "dg"), label_map="nifti")
    assert not (tmp_path / "dg").exists()


def test_evaluate_dg_command_on_tiny_cardiac_demo(tmp_path):
    script = load_script("evaluate_dg")
    out = tmp_path / "dg"
    script.main(task="cardiac", output_dir=str(out), max_epochs=1, image_size=64, n_per_domain=2, batch_size=4)
    with open(out / "dg_results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["variant"], r["target_domain"]) for r in rows] == [("full", "lge"), ("full", "t2"), ("full", "mean")]
    assert {"LV Dice", "MYO Dice", "RV Dice", "LV HD95", "mean Dice"} <= set(rows[0])
    assert all(0.0 <= float(r["mean Dice"]) <= 100.0 for r in rows)
    # Cardiac reports per volume (2 volumes of 4 slices per domain), with the per-slice means beside them.
    assert [r["num_volumes"] for r in rows] == ["2", "2", "4"]
    with open(out / "dg_results_per_slice.csv") as f:
        assert [r["num_slices"] for r in csv.DictReader(f)] == ["8", "8", "16"]
    summary = json.loads((out / "dg_results.json").read_text())
    assert summary["aggregation"] == "per volume"
    volumes = summary["volume_reports"]["full"]["lge"]
    slices = summary["reports"]["full"]["lge"]
    assert volumes["num_volumes"] == 2 and slices["num_images"] == 8
    # The CSV holds 4 decimals.
    expected = 100 * volumes["per_volume_mean"]["mean_over_regions"]["dice"]
    assert float(rows[0]["mean Dice"]) == pytest.approx(expected, abs=5e-5)
    assert "## Per volume" in (out / "dg_results.md").read_text()


def _ccsdg_fundus_root(root, n=4):
    """Two RIGA+-like domains whose masks follow CCSDG's loader: 0 background, 255 disc rim, 128 cup."""
    yy, xx = np.mgrid[:48, :48]
    for domain in ("BinRushed", "MESSIDOR_Base1"):
        for i in range(n):
            r = np.hypot(yy - 24 - i % 2, xx - 24)
            mask = np.zeros((48, 48), np.uint8)
            mask[r < 12], mask[r < 5] = 255, 128
            _png(root / domain / "images" / f"{i}.png", np.full((48, 48, 3), 90))
            _png(root / domain / "masks" / f"{i}.png", mask)
    return str(root)


class TrainingReached(AssertionError):
    pass


@pytest.fixture
def no_training(monkeypatch):
    """Any training or evaluation run fails: what a test reaches before it is what runs before training."""

    def refuse(*args, **kwargs):
        raise TrainingReached("a bundle run started")

    monkeypatch.setattr(dg, "_run_workflow", refuse)
    monkeypatch.setattr(dg, "_run_subprocess", refuse)


REFUGE_OVERRIDES = {"label_orig_values": [255, 128, 0], "label_target_values": [0, 1, 2]}


def test_dg_stops_before_training_when_the_label_map_contradicts_the_labels(tmp_path, no_training, capsys):
    domains = prepare_fundus_domains(_ccsdg_fundus_root(tmp_path / "RIGA"), str(tmp_path / "work"))
    run = dict(bundle_dir=BUNDLE, domains=domains, source="BinRushed", output_dir=str(tmp_path / "dg"))
    with pytest.raises(LabelMapError) as caught:
        dg.run_domain_generalization(**run, overrides=REFUGE_OVERRIDES)
    message = str(caught.value)
    assert "Label map 'refuge' contradicts the fundus label files of domain 'BinRushed'" in message
    assert "The map 'ccsdg'" in message and "--label_map ccsdg" in message
    assert not os.listdir(tmp_path / "dg")
    with pytest.raises(TrainingReached):  # switched off, the run goes on to training
        dg.run_domain_generalization(**run, overrides=REFUGE_OVERRIDES, check_label_map=False)
    ccsdg = {"label_orig_values": [255, 128], "label_target_values": [1, 2]}
    with pytest.raises(TrainingReached):  # the right map passes on both domains
        dg.run_domain_generalization(**run, overrides=ccsdg)
    printed = capsys.readouterr().out
    assert "[DG] label map checked on 'BinRushed' (4 label files)" in printed and "'MESSIDOR_Base1'" in printed


def test_evaluate_dg_command_checks_the_label_map_before_training(tmp_path, no_training):
    script = load_script("evaluate_dg")
    root = _ccsdg_fundus_root(tmp_path / "RIGA")
    command = dict(task="fundus", data_root=root, source="BinRushed", demo=True, max_epochs=1)
    with pytest.raises(LabelMapError, match="(?s)Label map 'refuge'.*map 'ccsdg'"):
        script.main(**command, output_dir=str(tmp_path / "a"), label_map="refuge")
    with pytest.raises(LabelMapError, match="(?s)Label map 'index'.*values 128, 255.*map 'ccsdg'"):
        script.main(**command, output_dir=str(tmp_path / "b"))
    with pytest.raises(TrainingReached):
        script.main(**command, output_dir=str(tmp_path / "c"), label_map="refuge", check_label_map=False)
    with pytest.raises(TrainingReached):
        script.main(**command, output_dir=str(tmp_path / "d"), label_map="ccsdg")


def test_dg_names_the_cardiac_order_whose_lv_is_enclosed(tmp_path, no_training):
    root = tmp_path / "slaug"
    yy, xx = np.mgrid[:32, :32]
    r = np.hypot(yy - 16, xx - 12)
    label = np.zeros((32, 32, 3), np.int16)
    label[r < 10], label[r < 6] = 1, 2  # SLAug's order: 1 myocardium, 2 LV
    label[(np.hypot(yy - 16, xx - 26) < 6) & (r >= 10)] = 3
    for domain in ("bSSFP", "LGE"):
        for case in ("patient1", "patient2"):
            os.makedirs(root / domain / "images", exist_ok=True)
            os.makedirs(root / domain / "labels", exist_ok=True)
            nib.save(
                nib.Nifti1Image(np.ones((32, 32, 3), np.float32), np.eye(4)),
                str(root / domain / "images" / f"{case}.nii.gz"),
            )
            nib.save(nib.Nifti1Image(label, np.eye(4)), str(root / domain / "labels" / f"{case}.nii.gz"))
    script = load_script("evaluate_dg")
    with pytest.raises(LabelMapError, match="(?s)left ventricle \\(value 1\\) should lie inside.*The map 'slaug'"):
        script.main(task="cardiac", data_root=str(root), source="bSSFP", output_dir=str(tmp_path / "dg"))
    with pytest.raises(TrainingReached):
        script.main(task="cardiac", data_root=str(root), source="bSSFP", output_dir=str(tmp_path / "dg2"),
                    label_map="slaug")  # fmt: skip


@pytest.mark.parametrize("task, configs", [("fundus", ["train.json", "demo.json"]),
                                           ("cardiac", ["train.json", "cardiac.json", "demo.json"])])  # fmt: skip
def test_demo_data_pass_the_label_map_check_of_the_demo_configs(tmp_path, task, configs):
    domains = make_demo_data(task, str(tmp_path / task), n_per_domain=3, image_size=64)
    checked = dg.check_label_map_of_configs(BUNDLE, configs, domains)
    assert sorted(checked) == sorted(domains)
    for summary in checked.values():
        assert all(n["slices"] > 0 and n["open_fraction"] == 0.0 for n in summary["nesting"].values())

"""scripts/analyse_kinds_errors.py without a network: its error classes on hand-made predictions of a tiny kinds demo
set with known answers (the ground truth itself, plus every unnamed lesion, minus one named lesion), the confusion
classes, boundary errors and the post-processing sweep; and its errors for a run or a data folder lacking a file."""

import json
import os

import numpy as np
import pytest
from monai_ext.demo import make_chest_xray_kinds_dataset
from script_loader import load_script


@pytest.fixture(scope="module")
def module():
    return load_script("analyse_kinds_errors")


@pytest.fixture(scope="module")
def images(module, tmp_path_factory):
    """``[(item, lesions, label)]`` of every image of a tiny kinds set (label: the ``labelcol`` file)."""
    data = str(tmp_path_factory.mktemp("kinds"))
    make_chest_xray_kinds_dataset(data, n_train=2, n_val=2, n_test=4, image_size=64)
    with open(os.path.join(data, "datalist.json")) as f:
        items = [item for split in json.load(f).values() for item in split]
    out = []
    for item in items:
        read = lambda key: module._read_png(os.path.join(data, item[key]))  # noqa: E731
        out.append((item, module.lesion_masks(read("kind_map"), read("zone_map"), item), read("label") > 127))
    return out


def union(lesions, named):
    mask = np.zeros(lesions[0]["mask"].shape, bool)
    for lesion in lesions:
        if lesion["named"] == named:
            mask |= lesion["mask"]
    return mask


ERRORS = ("fp", "fn", "fp_unnamed", "fp_background", "fp_boundary", "fn_missed", "fn_boundary")


def test_the_ground_truth_has_dice_one_and_no_error(module, images):
    for item, lesions, label in images:
        gt = union(lesions, named=True)
        assert np.array_equal(gt, label), item["name"]  # the named lesions' masks are the benchmark's label
        record = module.analyse_image(gt, lesions)
        assert record["dice"] == 1.0
        assert {k: record[k] for k in ERRORS} == dict.fromkeys(ERRORS, 0), item["name"]
        assert record["tp"] == record["gt"] == record["pred"] == label.sum()
        assert set(record["corrected_dice"].values()) == {1.0}
        assert record["hd95"]["as_is"] == 0.0
        for lesion in record["lesions"]:
            assert lesion["recall"] == (1.0 if lesion["named"] else 0.0)
            assert lesion.get("found", True) and not lesion.get("painted", False)
    summary = module.summarise([module.analyse_image(union(les, True), les) for _, les, _ in images])
    assert summary["dice"] == 1.0 and summary["unnamed"]["painted"] == 0
    assert all(k["named_not_found"] == 0 and k["unnamed_fp"] == 0 for k in summary["per_kind"].values())


def test_painting_every_unnamed_lesion_is_all_unnamed_lesion_fp(module, images):
    records, painted = [], 0
    for item, lesions, _ in images:
        unnamed = union(lesions, named=False)
        if not unnamed.any():
            continue
        record = module.analyse_image(union(lesions, named=True) | unnamed, lesions)
        records.append(record)
        # the demo's unnamed lesions lie more than the band away from the named ones: no boundary FP here
        assert record["fp"] == record["fp_unnamed"] == unnamed.sum(), item["name"]
        assert record["fp_background"] == record["fp_boundary"] == 0
        assert record["fn"] == 0 and record["dice"] < 1.0
        assert record["corrected_dice"]["no_fp_unnamed"] == 1.0
        assert record["corrected_dice"]["no_fp_unnamed_add_fn_missed"] == 1.0
        assert record["corrected_dice"]["no_fp_background"] == record["dice"]
        for lesion in record["lesions"]:
            if not lesion["named"]:
                assert lesion["painted"] and lesion["recall"] == 1.0 and lesion["fp"] == lesion["size"]
                painted += 1
        # removing each kind's unnamed FP (or each confusion class's) removes all of them together
        kinds = {lesion["kind"] for lesion in record["lesions"] if not lesion["named"]}
        if len(kinds) == 1:
            assert record["corrected_dice"][f"no_fp_unnamed_{kinds.pop()}"] == 1.0
    assert records, "the tiny demo set holds no image with an unnamed lesion"
    summary = module.summarise(records)
    assert summary["unnamed"]["painted"] == summary["unnamed"]["lesions"] == painted
    assert sum(c["painted"] for c in summary["confusion"].values()) == painted
    assert summary["corrected_dice"]["no_fp_unnamed"] == 1.0
    assert summary["budget"]["fp_unnamed"] == sum(union(les, False).sum() for _, les, _ in images)
    assert sum(k["unnamed_fp"] for k in summary["per_kind"].values()) == summary["budget"]["fp_unnamed"]


def test_a_named_lesion_left_out_is_missed(module, images):
    item, lesions, _ = next((x for x in images if sum(les["named"] for les in x[1]) >= 2), images[0])
    dropped = next(lesion for lesion in lesions if lesion["named"])
    record = module.analyse_image(union(lesions, named=True) & ~dropped["mask"], lesions)
    assert record["fn_missed"] == record["fn"] == dropped["mask"].sum() > 0
    assert record["fn_boundary"] == record["fp"] == 0
    assert record["dice"] < 1.0 and record["corrected_dice"]["add_fn_missed"] == 1.0
    assert record["corrected_dice"]["fix_boundary"] == record["dice"]
    missed = [lesion for lesion in record["lesions"] if lesion["named"] and not lesion["found"]]
    assert [(x["kind"], x["zone"], x["recall"]) for x in missed] == [(dropped["kind"], dropped["zone"], 0.0)]
    per_kind = module.summarise([record])["per_kind"]
    assert {kind: k["named_not_found"] for kind, k in per_kind.items() if k["named_not_found"]} == {dropped["kind"]: 1}


def test_confusion_classes_and_postprocessing_sweep(module):
    named = [("consolidation", "upper left"), ("nodule", "lower right")]
    assert module.confusion_class("ground-glass opacity", "upper left", named) == "kind"
    assert module.confusion_class("nodule", "middle left", named) == "location"
    assert module.confusion_class("nodule", "upper left", named) == "both"
    assert module.confusion_class("ground-glass opacity", "middle right", named) == "neither"

    gt = np.zeros((32, 32), bool)
    gt[4:12, 4:12] = True  # 64 px
    lesions = [{"kind": "consolidation", "zone": "upper left", "named": True, "mask": gt}]
    prob = np.where(gt, 0.9, 0.0)
    prob[20:23, 20:23] = 0.6  # a 9-px background component, kept at 0.5, gone at 0.7 and with "drop < 10 px"
    record = module.analyse_image(prob, lesions, with_hd95=False)
    assert record["fp_background"] == 9 and record["dice"] == pytest.approx(128 / 137)
    assert record["threshold_dice"]["0.5"] == record["dice"] and record["threshold_dice"]["0.7"] == 1.0
    assert record["threshold_dice"]["0.3"] == record["dice"]
    assert record["min_size_dice"] == {"10": 1.0, "20": 1.0, "40": 1.0}
    assert "hd95" not in record

    grown = np.zeros_like(gt)
    grown[3:13, 3:13] = True  # a 1-px rim too many (36 px), then one too few (28 px): boundary errors only
    record = module.analyse_image(grown, lesions, with_hd95=False)
    assert (record["fp_boundary"], record["fp_unnamed"], record["fp_background"], record["fn"]) == (36, 0, 0, 0)
    assert record["corrected_dice"]["no_fp_boundary"] == record["corrected_dice"]["fix_boundary"] == 1.0
    shrunk = np.zeros_like(gt)
    shrunk[5:11, 5:11] = True
    record = module.analyse_image(shrunk, lesions, with_hd95=False)
    assert (record["fn_boundary"], record["fn_missed"], record["fp"]) == (28, 0, 0)
    assert record["corrected_dice"]["add_fn_boundary"] == 1.0 and record["corrected_dice"]["add_fn_missed"] < 1.0


def test_missing_model_or_datalist_is_named(module, tmp_path):
    runs = tmp_path / "bench" / "runs"
    run = runs / "tgcnet_seed0"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"settings": {"variant": "tgcnet", "seed": 0, "overrides": {}}}))
    args = {"runs_dir": str(runs), "variants": ["tgcnet"], "seeds": [0], "output_dir": str(tmp_path / "out")}
    with pytest.raises(FileNotFoundError, match=r"tgcnet_seed0/models/model\.pt' not found"):
        module.main(**args)
    (run / "models").mkdir()
    (run / "models" / "model.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"data/reports/datalist\.json"):
        module.main(**args)  # the data beside runs/ by default
    with pytest.raises(FileNotFoundError, match=r"elsewhere/reports/datalist\.json"):
        module.main(**args, data_dir=str(tmp_path / "elsewhere"))
    assert not (tmp_path / "out").exists()

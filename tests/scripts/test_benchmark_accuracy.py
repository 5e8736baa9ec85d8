"""scripts/benchmark_accuracy.py bookkeeping, with the bundle runs and the data generators replaced by fakes: finished
runs are reused when their settings match (a killed benchmark continues), trained again when they do not, and an
output folder holding demo data of other settings is refused."""

import json
import os

import pytest
from script_loader import load_script


@pytest.fixture
def accuracy_script(monkeypatch):
    module = load_script("benchmark_accuracy")
    calls = []

    def fake_run_bundle(bundle, configs, overrides, log_file=None):
        calls.append((tuple(configs), overrides["seed"]))
        if "evaluate.json" in configs:
            os.makedirs(overrides["output_dir"], exist_ok=True)
            dice = 0.5 + 0.1 * overrides["seed"]
            report = {
                "num_images": 4,
                "per_image_mean": {"foreground": {"dice": dice, "iou": dice - 0.1, "hd95": 3.0}},
                "dataset_level": {"foreground": {"dice": dice + 0.01}},
            }
            with open(os.path.join(overrides["output_dir"], "report.json"), "w") as f:
                json.dump(report, f)

    monkeypatch.setattr(module, "run_bundle", fake_run_bundle)
    monkeypatch.setattr(module, "make_chest_xray_dataset", lambda path, **kwargs: os.makedirs(path))
    monkeypatch.setattr(module, "make_rereported_split", lambda source, path, **kwargs: os.makedirs(path))
    return module, calls


def test_finished_runs_are_reused_only_with_the_same_settings(accuracy_script, tmp_path):
    module, calls = accuracy_script
    out = str(tmp_path / "accuracy")
    module.main(output_dir=out, variants=["tgcnet"], seeds=[0, 1], max_epochs=2)
    assert len(calls) == 6  # per seed: train, evaluate on the test split, evaluate on the counterfactual split

    calls.clear()
    module.main(output_dir=out, variants=["tgcnet"], seeds=[0, 1, 2], max_epochs=2)
    assert sorted({seed for _, seed in calls}) == [2]  # only the new seed is trained
    with open(os.path.join(out, "accuracy.json")) as f:
        results = json.load(f)
    assert [r["seed"] for r in results["runs"]] == [0, 1, 2]
    assert [r.get("reused", False) for r in results["runs"]] == [True, True, False]
    assert results["summary"]["tgcnet"]["test_dice"]["mean"] == pytest.approx(0.6)

    calls.clear()
    module.main(output_dir=out, variants=["tgcnet"], seeds=[0], max_epochs=3)
    assert len(calls) == 3  # another number of epochs: trained again
    calls.clear()
    module.main(output_dir=out, variants=["tgcnet"], seeds=[0], max_epochs=3, reuse=False)
    assert len(calls) == 3


def test_output_folder_with_other_demo_data_is_refused(accuracy_script, tmp_path):
    module, _ = accuracy_script
    out = str(tmp_path / "accuracy")
    module.main(output_dir=out, variants=["tgcnet"], seeds=[0], max_epochs=1)
    with pytest.raises(ValueError, match="made with .*'n_train': 160.*not .*'n_train': 8"):
        module.main(output_dir=out, variants=["tgcnet"], seeds=[0], max_epochs=1, n_train=8)


def test_previous_results_extend_with_new_seeds_only_when_settings_match(accuracy_script, tmp_path):
    module, calls = accuracy_script
    module.main(output_dir=str(tmp_path / "first"), variants=["tgcnet"], seeds=[0, 1], max_epochs=2)
    stored = str(tmp_path / "stored.json")
    os.replace(tmp_path / "first" / "accuracy.json", stored)  # as kept under docs/benchmarks, runs folder gone

    calls.clear()
    out = str(tmp_path / "fresh")
    module.main(output_dir=out, variants=["tgcnet"], seeds=[0, 1, 2], max_epochs=2, previous=stored)
    assert sorted({seed for _, seed in calls}) == [2]
    with open(os.path.join(out, "accuracy.json")) as f:
        results = json.load(f)
    assert [r["seed"] for r in results["runs"]] == [0, 1, 2]
    assert results["settings"]["seeds"] == [0, 1, 2]
    assert results["summary"]["tgcnet"]["test_dice"]["values"] == pytest.approx([0.5, 0.6, 0.7])

    with pytest.raises(ValueError, match="other settings.*max_epochs.*\\(2, 3\\)"):
        module.main(output_dir=out, variants=["tgcnet"], seeds=[0, 3], max_epochs=3, previous=stored)

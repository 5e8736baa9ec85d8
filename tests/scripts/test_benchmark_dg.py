"""scripts/benchmark_dg.py bookkeeping, with the per-seed DG runs replaced by a fake: config overrides reach every
seed's command and the summary, and the per-target-domain table is written beside the mean one."""

import json
import os

from fire import parser as fire_parser
from script_loader import load_script

TARGETS = ("lge", "t2")


def fake_results(seed: int) -> dict:
    """dg_results.json of one seed: variant v scores 10 * (index + 1) + seed on lge and 5 * (index + 1) + seed / 2 on t2."""
    rows = []
    for index, variant in enumerate(("full", "no_em", "no_text", "no_alignment", "no_em_no_text")):
        lge, t2 = 10.0 * (index + 1) + seed, 5.0 * (index + 1) + seed / 2
        rows += [
            {"variant": variant, "target_domain": "lge", "mean Dice": lge},
            {"variant": variant, "target_domain": "t2", "mean Dice": t2},
            {"variant": variant, "target_domain": "mean", "mean Dice": (lge + t2) / 2},
        ]
    return {"source": "bssfp", "targets": list(TARGETS), "rows": rows, "aggregation": "per volume"}


def test_overrides_reach_every_seed_and_the_per_target_table(monkeypatch, tmp_path):
    module = load_script("benchmark_dg")
    commands = {}

    def fake_run_seed(command, seed_dir, reuse):
        seed = int(command[command.index("--seed") + 1])
        commands[seed] = command
        return fake_results(seed)

    monkeypatch.setattr(module, "_run_seed", fake_run_seed)
    markdown_path = module.main(
        task="cardiac", output_dir=str(tmp_path), seeds=(0, 2), overrides={"augment_intensity_curve": True}
    )
    for command in commands.values():
        overrides = fire_parser.DefaultParseValue(command[command.index("--overrides") + 1])  # as evaluate_dg gets it
        assert overrides["augment_intensity_curve"] is True
        assert overrides["class_prompts"].endswith("prompts_cardiac_demo.json")  # the aligned CLIP's own overrides stay
    assert sorted(commands) == [0, 2]
    with open(os.path.join(tmp_path, "dg_seeds.json"), encoding="utf-8") as f:
        summary = json.load(f)
    assert summary["settings"]["overrides"] == {"augment_intensity_curve": True}
    assert summary["per_target"]["t2"]["no_em"] == {"0": 10.0, "2": 11.0}
    text = open(markdown_path, encoding="utf-8").read()
    assert '`{"augment_intensity_curve": true}`' in text
    assert "| variant | lge | t2 |" in text
    assert "per volume mean over each target domain" in text  # cardiac Dice is per volume, as evaluate_dg made it
    assert "| no_em | 21.00 ± 1.41 | 10.50 ± 0.71 |" in text

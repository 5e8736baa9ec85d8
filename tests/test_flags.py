"""Switches given as lower-case text on the command line (``--use_em false`` arrives as the text ``'false'``) are
refused with the right spelling instead of silently counting as true: by the scripts' entry points
(:func:`checked_flags`) and by the first step of every bundle run (:func:`check_flags`)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from monai.bundle import ConfigWorkflow
from monai_ext.bundle.runner import bundle_run_command
from monai_ext.flags import check_flags, checked_flags, ensure_flag

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "value, expected", [(True, True), (False, False), (0, False), (1, True), (np.bool_(True), True)]
)
def test_ensure_flag_accepts_booleans(value, expected):
    assert ensure_flag(value, "use_em") is expected


@pytest.mark.parametrize("value", ["false", "True", "no", 2, None, 0.5])
def test_ensure_flag_refuses_everything_else(value):
    with pytest.raises(TypeError, match="'use_em' must be True or False"):
        ensure_flag(value, "use_em")


def test_ensure_flag_says_how_to_write_it():
    with pytest.raises(TypeError, match="write --use_em False"):
        ensure_flag("false", "use_em")


def test_checked_flags_converts_flags_and_exits_on_text():
    def main(path: str, overwrite: bool = False, demo: bool | None = None, count: int = 1):
        return overwrite, demo, count

    wrapped = checked_flags(main)
    assert wrapped("x", overwrite=1, count="3") == (True, None, "3")
    with pytest.raises(SystemExit, match="'overwrite' must be True or False.*--overwrite False"):
        wrapped("x", overwrite="false")


def test_script_refuses_lower_case_false_before_doing_anything(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "make_demo_data.py"), "fundus", "--out_dir", str(out),
         "--overwrite", "false"],  # fmt: skip
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "--overwrite False" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_check_flags_accepts_booleans_and_the_values_allowed_beside_them():
    assert check_flags({"amp": False, "use_em": True, "freeze_clip": "partial"}, {"freeze_clip": ["partial"]}) is None


@pytest.mark.parametrize(
    "flags, allowed", [({"amp": True, "use_em": "false"}, None), ({"use_em": "partial"}, {"freeze_clip": ["partial"]})]
)
def test_check_flags_refuses_text_naming_the_switch(flags, allowed):
    with pytest.raises(TypeError, match="'use_em' must be True or False"):
        check_flags(flags, allowed)


def test_bundle_run_refuses_lower_case_false_at_entry(tmp_path):
    """``--use_em false`` on ``python -m monai.bundle run`` stops the run at its first step, before the demo data."""
    data = tmp_path / "data"
    command = bundle_run_command(
        os.path.join(REPO, "bundles", "vlsanet"),
        ["train.json", "demo.json"],
        {"use_em": "false", "dataset_dir": str(data)},
    )
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode != 0
    assert "'use_em' must be True or False" in result.stderr and "write --use_em False" in result.stderr
    assert not data.exists()


@pytest.mark.parametrize(
    "bundle, configs, switch",
    [
        ("vlsanet", ["train.json", "demo.json"], "use_em"),
        ("vlsanet", ["train.json", "demo.json"], "freeze_clip"),
        ("vlsanet", ["train.json", "demo.json"], "use_ce_loss"),
        ("vlsanet", ["train.json", "demo.json"], "augment_colour"),
        ("vlsanet", ["train.json", "demo.json"], "augment_intensity_curve"),
        ("vlsanet", ["train.json", "demo.json"], "augment_class_intensity_curve"),
        ("vlsanet", ["train.json", "demo.json"], "amp"),
        ("vlsanet", ["inference.json"], "use_text"),
        ("tgcnet", ["train.json", "demo.json"], "use_knowledge"),
        ("tgcnet", ["train.json", "demo.json"], "resume"),
        ("tgcnet", ["inference.json"], "overwrite"),
    ],
)
def test_bundle_configs_refuse_text_switches_at_entry(tmp_path, bundle, configs, switch):
    """A Python caller (``ConfigWorkflow``, as the domain generalization experiment runs the bundle) passing the text
    is stopped by the first step of ``initialize``."""
    config_files = [os.path.join(REPO, "bundles", bundle, "configs", name) for name in configs]
    data = tmp_path / "data"
    workflow = ConfigWorkflow(
        config_file=config_files,
        workflow_type="train" if "train.json" in configs else "infer",
        bundle_root=os.path.join(REPO, "bundles", bundle),
        dataset_dir=str(data),
        **{switch: "false"},
    )
    with pytest.raises(Exception) as info:  # MONAI wraps the TypeError of a component
        workflow.initialize()
    messages, error = [], info.value
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    assert any(f"write --{switch} False" in message for message in messages), messages
    assert not data.exists()

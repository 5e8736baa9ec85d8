"""Switches given as lower-case text on the command line (``--use_em false`` arrives as the text ``'false'``) are
refused with the right spelling instead of silently counting as true."""

import os
import subprocess
import sys

import numpy as np
import pytest
from monai.bundle import ConfigParser

from monai_ext.flags import checked_flags, ensure_flag

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


@pytest.mark.parametrize(
    "bundle, config_id, switch",
    [
        ("vlsanet", "network_def", "use_em"),
        ("vlsanet", "network_def", "freeze_clip"),
        ("vlsanet", "loss#seg_loss#lambda_ce", "use_ce_loss"),
        ("vlsanet", "train#trainer#amp", "amp"),
        ("tgcnet", "network_def", "use_knowledge"),
        ("tgcnet", "validate#evaluator#amp", "amp"),
    ],
)
def test_bundle_configs_refuse_text_switches(bundle, config_id, switch):
    configs = os.path.join(REPO, "bundles", bundle, "configs")
    parser = ConfigParser()
    parser.read_config([os.path.join(configs, "train.json"), os.path.join(configs, "demo.json")])
    parser["bundle_root"] = os.path.join(REPO, "bundles", bundle)
    parser[switch] = "false"
    with pytest.raises(Exception) as info:  # MONAI wraps the TypeError of an expression or a component
        parser.get_parsed_content(config_id)
    messages, error = [], info.value
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    assert any(f"write --{switch} False" in message for message in messages), messages

"""`run_bundle` passes override values to `python -m monai.bundle run` without changing their type."""

import ast
import json
import os

import pytest
from monai_ext.bundle.runner import bundle_run_command, run_bundle


@pytest.fixture
def echo_bundle(tmp_path):
    """A bundle whose run writes the repr of its overridable values to ``out``."""
    configs = tmp_path / "bundle" / "configs"
    configs.mkdir(parents=True)
    config = {
        "flag": True,
        "nothing": 1,
        "values": [],
        "nested": {},
        "text": "",
        "number": 0,
        "out": str(tmp_path / "values.txt"),
        "initialize": [],
        "run": ["$open(@out, 'w').write(repr((@flag, @nothing, @values, @nested, @text, @number)))"],
        "finalize": [],
    }
    (configs / "echo.json").write_text(json.dumps(config))
    return tmp_path


def test_values_keep_their_type(echo_bundle):
    overrides = {
        "flag": False,
        "nothing": None,
        "values": [1, 2.5],
        "nested": {"a": True},
        "text": "left lung",
        "number": 3,
    }
    run_bundle(str(echo_bundle / "bundle"), ["echo.json"], overrides)
    received = ast.literal_eval((echo_bundle / "values.txt").read_text())
    assert received == (False, None, [1, 2.5], {"a": True}, "left lung", 3)


def test_expressions_pass_through_and_failures_name_the_config(echo_bundle):
    command = bundle_run_command(str(echo_bundle / "bundle"), ["echo.json"], {"flag": "$1 > 2"})
    assert command[command.index("--flag") + 1] == "$1 > 2"
    with pytest.raises(RuntimeError, match=r"echo.json.*see .*log"):
        run_bundle(str(echo_bundle / "bundle"), ["echo.json"], {"out": "$1 / 0"}, log_file=str(echo_bundle / "run.log"))
    assert "ZeroDivisionError" in (echo_bundle / "run.log").read_text()
    with pytest.raises(FileNotFoundError, match="missing.json"):
        bundle_run_command(str(echo_bundle / "bundle"), ["missing.json"])
    assert os.path.isfile(echo_bundle / "run.log")

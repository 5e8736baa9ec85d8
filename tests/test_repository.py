"""Repository-level promises: the README quick start and CI agree, and the layout the guide fixes is there."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_quick_start_is_exactly_two_one_line_commands():
    commands = _quick_start_commands()
    assert len(commands) == 2, commands
    assert all("\n" not in command for command in commands), commands
    assert commands[0].startswith("pip install -e .") and "run_demo.py" in commands[0]


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = _quick_start_commands()[1]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


@pytest.mark.parametrize("path", ["bundles", "monai_ext", "scripts", "tests", "README.md", "setup.cfg", "LICENSE"])
def test_fixed_layout(path):
    assert (ROOT / path).exists()


def test_no_weights_committed():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "ls-files", "bundles"], cwd=ROOT, capture_output=True, text=True, check=True)
    weights = [
        line for line in listed.stdout.splitlines() if Path(line).suffix in {".pt", ".pth", ".ts", ".onnx", ".ckpt"}
    ]
    assert not weights, f"weights belong in large_files.yml, not git: {weights}"

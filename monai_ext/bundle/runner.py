"""Run a bundle's configs with ``python -m monai.bundle run`` in a subprocess, as a user would from the shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["bundle_run_command", "run_bundle"]


def bundle_run_command(
    bundle_dir: str, configs: Sequence[str], overrides: Mapping[str, Any] | None = None, logging_file: bool = True
) -> list[str]:
    """Command line for ``python -m monai.bundle run`` merging ``configs`` (names under ``<bundle_dir>/configs``).

    Override values other than strings are passed as Python literals (``repr``), which the command line (``fire``)
    reads back as the same value: ``False`` stays a boolean (JSON's ``false`` would arrive as the truthy string
    "false"); ``None`` becomes the expression ``$None``. Strings are passed as they are, so ``$`` expressions work.

    Example::

        bundle_run_command("bundles/tgcnet", ["train.json", "demo.json"], {"max_epochs": 2})
    """
    config_dir = os.path.join(bundle_dir, "configs")
    files = [os.path.join(config_dir, name) for name in configs]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise FileNotFoundError(f"Bundle config(s) not found: {', '.join(missing)}")
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", json.dumps(files)]
    logging_conf = os.path.join(config_dir, "logging.conf")
    if logging_file and os.path.isfile(logging_conf):
        command += ["--logging_file", logging_conf]
    command += ["--bundle_root", os.path.abspath(bundle_dir)]
    for key, value in (overrides or {}).items():
        if value is None:
            value = "$None"  # `monai.bundle run` ignores arguments whose value is None
        command += [f"--{key}", value if isinstance(value, str) else repr(value)]
    return command


def run_bundle(
    bundle_dir: str,
    configs: Sequence[str],
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    log_file: str | None = None,
) -> None:
    """Run the bundle and stream its output (to ``log_file`` when given, e.g. for runs in parallel); raises
    ``RuntimeError`` naming the configs (and the log) when it fails."""
    command = bundle_run_command(bundle_dir, configs, overrides)
    run_env = {**os.environ, **(env or {})}
    if log_file is None:
        result = subprocess.run(command, env=run_env, cwd=cwd, check=False)
    else:
        with open(log_file, "w", encoding="utf-8") as log:
            result = subprocess.run(command, env=run_env, cwd=cwd, check=False, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        where = f"; see {log_file}" if log_file else ""
        raise RuntimeError(
            f"Bundle run {list(configs)} in {bundle_dir} failed with exit code {result.returncode}{where}."
        )

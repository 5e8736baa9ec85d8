"""A bundle's version pins checked against PyPI for the Python the MONAI Model Zoo's CI sets up (needs the network).

The Zoo's CPU premerge (``.github/workflows/premerge-cpu.yml``: Python 3.10 on ``ubuntu-latest``) installs
``monai==<monai_version>`` (release candidates allowed), ``torch==<pytorch_version>``, ``numpy==<numpy_version>`` and
every ``name==version`` of ``required_packages_version`` and ``optional_packages_version``
(``ci/get_bundle_requirements.py``; MONAI itself reads the latter as a deprecated name of the former). A pin passes
when PyPI has, for that exact release, a wheel that pip on CPython 3.10, manylinux x86_64, would take: its tags match
(``packaging.tags``) and its ``requires-python`` admits 3.10. Only the file list of PyPI's simple index is read
(``https://pypi.org/simple/<name>/``, its JSON form, PEP 691: what pip reads), nothing is downloaded; the dependencies
of the pins are not resolved.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

__all__ = ["PYPI_SIMPLE_URL", "ZOO_PYTHON", "check_pins", "linux_tags", "metadata_pins", "pypi_files"]

# The Python of the Model Zoo's CPU premerge (model-zoo .github/workflows/premerge-cpu.yml: python-version 3.10.14).
ZOO_PYTHON = "3.10"
PYPI_SIMPLE_URL = "https://pypi.org/simple/{name}/"
# Metadata field -> distribution, for the versions the Zoo's CI installs besides the two package lists.
BASE_FIELDS = {"monai_version": "monai", "pytorch_version": "torch", "numpy_version": "numpy"}
# The old manylinux names and the glibc minor version they stand for (PEP 600).
LEGACY_MANYLINUX = ((17, "manylinux2014"), (12, "manylinux2010"), (5, "manylinux1"))


def metadata_pins(metadata: Mapping[str, Any]) -> dict[str, str]:
    """``{distribution: version}`` that the Zoo's CI installs for this metadata: MONAI, PyTorch, NumPy, then
    ``optional_packages_version`` and ``required_packages_version``."""
    pins = {name: str(metadata[field]) for field, name in BASE_FIELDS.items() if metadata.get(field)}
    for field in ("optional_packages_version", "required_packages_version"):
        pins.update({str(k): str(v) for k, v in (metadata.get(field) or {}).items()})
    return pins


def linux_tags(python_version: str = ZOO_PYTHON, glibc: str = "2.28") -> set[Tag]:
    """The wheel tags pip on CPython ``python_version`` takes on x86_64 Linux with glibc ``glibc`` or newer."""
    major, minor = (int(p) for p in python_version.split(".")[:2])
    glibc_minor = int(glibc.split(".")[1])
    platforms = [f"manylinux_2_{m}_x86_64" for m in range(glibc_minor, 4, -1)]
    platforms += [f"{alias}_x86_64" for m, alias in LEGACY_MANYLINUX if m <= glibc_minor]
    return set(cpython_tags((major, minor), platforms=platforms)) | set(
        compatible_tags((major, minor), interpreter=f"cp{major}{minor}", platforms=platforms)
    )


def pypi_files(name: str, index_url: str = PYPI_SIMPLE_URL, timeout: float = 60.0) -> list[dict] | None:
    """The files of a project on PyPI's simple index (``filename``, ``requires-python``, ``yanked``...), ``None`` if
    PyPI does not have the project (HTTP 404)."""
    request = urllib.request.Request(
        index_url.format(name=canonicalize_name(name)), headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response).get("files", [])
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def _admits(requires_python: str | None, python_version: str) -> bool:
    if not requires_python:
        return True
    try:
        return SpecifierSet(requires_python).contains(python_version, prereleases=True)
    except InvalidSpecifier:
        return True  # pip ignores what it cannot parse


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def _release_problem(
    name: str, version: str, files: list[dict] | None, python_version: str, tags: set[Tag]
) -> str | None:
    if files is None:
        return f"{name}=={version}: not on PyPI"
    wheels, other_tags, requires = [], set(), set()
    for f in files:
        if f.get("yanked") or not f.get("filename", "").endswith(".whl"):
            continue
        try:
            _, wheel_version, _, file_tags = parse_wheel_filename(f["filename"])
        except (InvalidWheelFilename, InvalidVersion):
            continue
        if not _same_version(str(wheel_version), version):
            continue
        wheels.append(f)
        if not file_tags & tags:
            other_tags |= {t.interpreter for t in file_tags}
        elif _admits(f.get("requires-python"), python_version):
            return None
        else:
            requires.add(f.get("requires-python"))
    if not wheels:
        if not any(_same_version(_sdist_version(f.get("filename", ""), name), version) for f in files):
            return f"{name}=={version}: no such release on PyPI"
        detail = "only a source archive, which pip would have to build"
    else:
        parts = [f"requires-python {', '.join(sorted(requires))}"] if requires else []
        parts += [f"wheels only for {', '.join(sorted(other_tags)[:8])}"] if other_tags else []
        detail = "; ".join(parts)
    return f"{name}=={version}: no wheel for CPython {python_version} on manylinux x86_64 ({detail})"


def _sdist_version(filename: str, name: str) -> str:
    """The version in ``<name>-<version>.tar.gz``/``.zip`` (``""`` for other files)."""
    stem = next((filename[: -len(end)] for end in (".tar.gz", ".zip") if filename.endswith(end)), None)
    if stem is None:
        return ""
    project, _, version = stem.rpartition("-")
    return version if canonicalize_name(project) == canonicalize_name(name) else ""


def check_pins(
    pins: Mapping[str, str] | Iterable[tuple[str, str]],
    python_version: str = ZOO_PYTHON,
    glibc: str = "2.28",
    fetch: Callable[[str], list[dict] | None] = pypi_files,
) -> list[str]:
    """The pins without a wheel that CPython ``python_version`` on manylinux x86_64 installs, one line each (empty: all
    installable).

    Args:
        pins: ``{distribution: version}``, e.g. :func:`metadata_pins` of a bundle's metadata.
        glibc: the oldest glibc to support (``manylinux_2_<minor>`` wheels up to it count).
        fetch: ``name -> the project's files on the index (PEP 691 JSON "files") or None`` (tests pass a fake).

    Example::

        with open("bundles/tgcnet/configs/metadata.json") as f:
            print(check_pins(metadata_pins(json.load(f))))
    """
    tags = linux_tags(python_version, glibc)
    items = pins.items() if isinstance(pins, Mapping) else pins
    problems = []
    for name, version in items:
        name, version = str(name).strip(), str(version).strip()
        problem = _release_problem(name, version, fetch(name), python_version, tags)
        if problem:
            problems.append(problem)
    return problems

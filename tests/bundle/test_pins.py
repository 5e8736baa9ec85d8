"""Pins against PyPI for the Model Zoo's Python (offline: a fake index answers; the real check is
`scripts/package_bundle.py --check_pins`, which needs the network)."""

from __future__ import annotations

import json
import os

from monai_ext.bundle.pins import check_pins, linux_tags, metadata_pins

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# File lists as PyPI's simple index (PEP 691 JSON) gives them.
INDEX = {
    "numpy": [
        {"filename": "numpy-2.2.6-cp310-cp310-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"},
        {"filename": "numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"},
        {"filename": "numpy-2.4.6-cp311-cp311-win_amd64.whl"},
        {"filename": "numpy-2.4.6.tar.gz"},
    ],
    "fire": [{"filename": "fire-0.4.0.tar.gz"}, {"filename": "fire-0.7.1-py3-none-any.whl"}],
    "transformers": [
        {"filename": "transformers-5.20.2-py3-none-any.whl", "requires-python": ">=3.10.0"},
        {"filename": "transformers-5.24.0-py3-none-any.whl", "requires-python": ">=3.11.0"},
    ],
    "torch": [
        {"filename": "torch-2.14.1-cp310-cp310-manylinux_2_28_x86_64.whl"},
        {"filename": "torch-2.14.1-cp310-cp310-manylinux_2_34_x86_64.whl", "yanked": True},
    ],
    "itk-core": [{"filename": "itk_core-5.4.7-cp310-cp310-manylinux_2_34_x86_64.whl"}],
    "pyyaml": [{"filename": "PyYAML-6.0.3-cp310-cp310-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"}],
}


def fake_index(name):
    return INDEX.get(name.lower())


def test_a_pin_needs_a_wheel_that_cpython_3_10_on_manylinux_takes():
    pins = {
        "numpy": "2.2.6",
        "fire": "0.7.1",
        "transformers": "5.20.2",
        "torch": "2.14.1",
        "PyYAML": "6.0.3",  # names compare case-insensitively, as on PyPI
    }
    assert check_pins(pins, fetch=fake_index) == []
    problems = check_pins(
        [
            ("numpy", "2.4.6"),  # Python 3.11+ wheels only
            ("fire", "0.4.0"),  # no wheel
            ("transformers", "5.24.0"),  # requires-python excludes 3.10
            ("numpy", "9.9.9"),
            ("nosuchpackage", "1.0"),
            ("itk-core", "5.4.7"),  # manylinux_2_34 only: newer than glibc 2.28
        ],
        fetch=fake_index,
    )
    assert problems == [
        "numpy==2.4.6: no wheel for CPython 3.10 on manylinux x86_64 (wheels only for cp311)",
        "fire==0.4.0: no wheel for CPython 3.10 on manylinux x86_64 (only a source archive, which pip would have to "
        "build)",
        "transformers==5.24.0: no wheel for CPython 3.10 on manylinux x86_64 (requires-python >=3.11.0)",
        "numpy==9.9.9: no such release on PyPI",
        "nosuchpackage==1.0: not on PyPI",
        "itk-core==5.4.7: no wheel for CPython 3.10 on manylinux x86_64 (wheels only for cp310)",
    ]
    assert check_pins({"itk-core": "5.4.7"}, glibc="2.35", fetch=fake_index) == []
    assert check_pins({"numpy": "2.4.6"}, python_version="3.11", fetch=fake_index) == []


def test_linux_tags_are_those_of_cpython_on_manylinux_x86_64():
    tags = {str(t) for t in linux_tags("3.10", glibc="2.28")}
    assert {"cp310-cp310-manylinux_2_28_x86_64", "cp310-cp310-manylinux2014_x86_64", "py3-none-any"} <= tags
    assert "cp310-abi3-manylinux_2_17_x86_64" in tags
    assert not any("cp311" in t or "win" in t or "macosx" in t or "manylinux_2_29" in t for t in tags)


def test_metadata_pins_are_what_the_model_zoo_ci_installs():
    with open(os.path.join(REPO, "bundles", "tgcnet", "configs", "metadata.json")) as f:
        metadata = json.load(f)
    pins = metadata_pins(metadata)
    assert pins["monai"] == metadata["monai_version"] and pins["torch"] == metadata["pytorch_version"]
    assert pins["numpy"] == metadata["numpy_version"]
    assert {k: pins[k] for k in metadata["required_packages_version"]} == metadata["required_packages_version"]
    assert metadata_pins({"monai_version": "1.6.1", "optional_packages_version": {"einops": "0.8.1"}}) == {
        "monai": "1.6.1",
        "einops": "0.8.1",
    }

"""The bundles' configs carry no logic and their overlays name what they change.

* An overlay sets ids that exist in the config it goes over (or that it adds, listed here), by name: never a list
  position (``#1``) or a slice, which silently point elsewhere once the base list changes.
* ``$`` expressions hold no control flow (``if``/``else``/``and``/``or``); a component chosen by a switch carries
  MONAI's ``_disabled_``. A comprehension's filter (``[p for p in ... if p.requires_grad]``) selects data and is allowed.
* Every run starts by checking its switches: ``initialize`` begins with ``@flag_check``, which lists every switch the
  config and its overlays set.
"""

from __future__ import annotations

import io
import json
import os
import re
import tokenize

import pytest
from monai.bundle import ConfigParser
from monai_ext.clip import ALIGNED_TINY_CLIP_CHECKPOINT

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# bundle -> base config (or a base with overlays, in reading order) -> the overlays read over it (as in the bundles'
# README commands).
OVERLAYS = {
    "tgcnet": {
        "train.json": [
            "baseline_unet.json",
            "demo.json",
            "demo_oracle.json",
            "evaluate.json",
            "guide_decoder.json",
            "multi_gpu_train.json",
            "protocol_mosmeddata.json",
            "protocol_qata_cov19.json",
        ],
        "inference.json": ["demo_inference.json", "inference_ct.json"],
        # demo task v2 on the aligned tiny CLIP, read over the demo (as scripts/run_demo.py does)
        ("train.json", "demo.json"): ["demo_kinds.json"],
        ("inference.json", "demo_inference.json"): ["demo_kinds_inference.json"],
    },
    "vlsanet": {
        "train.json": ["cardiac.json", "demo.json", "evaluate.json", "multi_gpu_train.json"],
        "inference.json": ["cardiac_inference.json", "demo_inference.json"],
    },
}
# JSON files of configs/ that are data, not configs of a run: metadata, knowledge bases, class prompts.
DATA_FILES = re.compile(r"(.*metadata|medical_knowledge.*|prompts_.*)\.json")
# The ids an overlay adds; every other id it sets must exist in its base.
ADDED_IDS = {
    "demo.json": {"demo_counts", "demo_data", "demo_sources", "demo_source"},
    "evaluate.json": {"test_split"},
    "demo_oracle.json": {"oracle_transforms"},
    "inference_ct.json": {"ct_volume", "hu_window", "slice_batch_size"},
    "multi_gpu_train.json": {"dist_backend"},
}
# Top-level booleans that are not switches a user gives: computed by multi_gpu_train.json once the group is joined.
NOT_SWITCHES = {"not_rank0"}


def _chain(base: str | tuple[str, ...]) -> tuple[str, ...]:
    return base if isinstance(base, tuple) else (base,)


PAIRS = [(b, base, o) for b, bases in OVERLAYS.items() for base, overlays in bases.items() for o in overlays]
CONFIGS = sorted({(b, name) for b, base, o in PAIRS for name in (*_chain(base), o)})


def _path(bundle: str, name: str) -> str:
    return os.path.join(REPO, "bundles", bundle, "configs", name)


def _load(bundle: str, name: str) -> dict:
    with open(_path(bundle, name)) as f:
        return json.load(f)


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _positional(config_id: str) -> bool:
    return any(part.isdigit() for part in config_id.split("#"))


@pytest.mark.parametrize("bundle", sorted(OVERLAYS))
def test_every_config_is_a_base_or_an_overlay(bundle):
    names = os.listdir(os.path.join(REPO, "bundles", bundle, "configs"))
    names = {n for n in names if n.endswith(".json") and not DATA_FILES.fullmatch(n)}
    listed = {n for base in OVERLAYS[bundle] for n in _chain(base)}
    listed |= {o for overlays in OVERLAYS[bundle].values() for o in overlays}
    assert names == listed


@pytest.mark.parametrize("bundle, base, overlay", PAIRS)
def test_overlay_sets_existing_ids_by_name(bundle, base, overlay):
    base_parser = ConfigParser()
    base_parser.read_config([_path(bundle, name) for name in _chain(base)])
    merged = ConfigParser()
    merged.read_config([_path(bundle, name) for name in (*_chain(base), overlay)])
    added = ADDED_IDS.get(overlay, set())
    for config_id, value in _load(bundle, overlay).items():
        assert not _positional(config_id), f"{overlay} sets '{config_id}' by list position; name the component"
        assert config_id in base_parser or config_id in added, f"{overlay} sets '{config_id}', which {base} lack"
        assert merged[config_id] == value
    assert merged.get_parsed_content("flag_check") is None  # the shipped values are all booleans


@pytest.mark.parametrize("bundle, name", CONFIGS)
def test_references_name_ids(bundle, name):
    for text in _strings(_load(bundle, name)):
        for match in re.finditer(r"[@%]([\w#]+)(\s*\[[^\]]*\])?", text):
            reference, subscript = match.group(1), match.group(2) or ""
            assert not _positional(reference), f"{name}: '{text}' refers to a list position"
            assert ":" not in subscript, f"{name}: '{text}' slices a list of components"


def _control_flow(expression: str) -> list[str]:
    """The ``if``/``else``/``and``/``or`` of ``expression``, except the filters of comprehensions."""
    found, comprehension = [], [False]  # per open bracket: has a ``for`` been seen
    for token in tokenize.generate_tokens(io.StringIO(expression).readline):
        if token.type == tokenize.OP and token.string in "([{":
            comprehension.append(False)
        elif token.type == tokenize.OP and token.string in ")]}":
            comprehension.pop()
        elif token.type == tokenize.NAME and token.string == "for":
            comprehension[-1] = True
        elif token.type == tokenize.NAME and token.string in ("if", "else", "and", "or"):
            if not (token.string == "if" and comprehension[-1]):
                found.append(token.string)
    return found


def test_control_flow_detection():
    assert _control_flow("[p for p in net.parameters() if p.requires_grad]") == []
    assert _control_flow("torch.device('cuda' if torch.cuda.is_available() else 'cpu')") == ["if", "else"]
    assert _control_flow("[a if b else c for a in x]") == ["if", "else"]
    assert _control_flow("dist.is_initialized() or dist.init_process_group()") == ["or"]


@pytest.mark.parametrize("bundle, name", CONFIGS)
def test_expressions_hold_no_control_flow(bundle, name):
    for text in _strings(_load(bundle, name)):
        if text.startswith("$") and not text.startswith("$import "):
            expression = re.sub(r"@([\w#]+)", r"\1", text[1:]).replace("#", "_")
            assert not _control_flow(expression), f"{name}: '{text}' holds control flow; use _disabled_ or a function"


@pytest.mark.parametrize("bundle, base", [(b, base) for b, bases in OVERLAYS.items() for base in bases])
def test_runs_start_by_checking_every_switch(bundle, base):
    config = _load(bundle, _chain(base)[0])
    assert config["flag_check"]["_target_"] == "monai_ext.flags.check_flags"
    flags = config["flag_check"]["flags"]
    assert all(value == f"@{name}" for name, value in flags.items())
    switches = set()
    for name in [*_chain(base), *OVERLAYS[bundle][base]]:
        layer = _load(bundle, name)
        switches |= {k for k, v in layer.items() if isinstance(v, bool) and "#" not in k} - NOT_SWITCHES
        if "initialize" in layer:
            assert layer["initialize"][0] == "@flag_check", f"{name}: initialize must start with the switch check"
    assert switches <= set(flags), f"{base}: flag_check lacks {sorted(switches - set(flags))}"


def test_demo_v2_overlays_take_the_aligned_clip_v2_knowledge_and_v2_data():
    parsers = {}
    for chain in (("train.json", "demo.json", "demo_kinds.json"), ("inference.json", "demo_kinds_inference.json")):
        parser = parsers[chain[0]] = ConfigParser()
        parser.read_config([_path("tgcnet", name) for name in chain])
        parser["bundle_root"] = os.path.join(REPO, "bundles", "tgcnet")
        assert parser.get_parsed_content("clip_checkpoint") == ALIGNED_TINY_CLIP_CHECKPOINT
        assert parser.get_parsed_content("knowledge_file").endswith("medical_knowledge_v2.json")
    assert parsers["train.json"]["demo_data#_target_"] == "monai_ext.demo.make_chest_xray_kinds_dataset"
    assert parsers["train.json"].get_parsed_content("dataset_dir").endswith("demo_data/chest_xray_kinds")

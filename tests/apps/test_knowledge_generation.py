"""Knowledge regeneration: prompt building, answer parsing, term lists and the atomic write path (fake LM)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from monai_ext.apps.knowledge_generation import (
    DEFAULT_PROMPT_TEMPLATE,
    build_prompt,
    generate_knowledge,
    load_term_list,
    parse_answer,
)
from monai_ext.text import MedicalKnowledgeBase

REPO_ROOT = Path(__file__).resolve().parents[2]


def fake_lm(prompt: str) -> str:
    """Answers in the requested format, echoing the term so the test can check the wiring."""
    term = prompt.split("Term: ")[1].split("\n")[0].split(" (")[0]
    return f"Sure!\n**Definition:** {term} is a finding. Extra sentence.\n- Visual: {term} looks white.\n"


def test_build_prompt_with_and_without_aliases():
    prompt = build_prompt("nodule", ["nodules", "nodular"])
    assert "Term: nodule (also written: nodules, nodular)\n" in prompt and "Definition:" in prompt
    assert "Term: effusion\n" in build_prompt("effusion")
    assert build_prompt("x", template="Explain {term}{aliases}.") == "Explain x."


def test_parse_answer_formats():
    assert parse_answer("Definition: Fluid in the pleura. More.\nVisual: Blunted angle.") == {
        "definition": "Fluid in the pleura.",
        "visual": "Blunted angle.",
    }
    assert parse_answer("1. **Definition**: A.\n2. **Visual appearance** - B.")["visual"] == "B."
    with pytest.raises(ValueError, match="'nodule'.*visual"):
        parse_answer("Definition: only one line", term="nodule")


def test_load_term_list_variants(tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(["nodule", "effusion"]))
    assert load_term_list(listed) == {"nodule": [], "effusion": []}
    mapped = tmp_path / "map.json"
    mapped.write_text(json.dumps({"nodule": ["nodules"]}))
    assert load_term_list(mapped) == {"nodule": ["nodules"]}
    bundle = load_term_list(REPO_ROOT / "bundles" / "tgcnet" / "configs" / "medical_knowledge.json")
    assert "consolidation" in bundle and "consolidations" in bundle["consolidation"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"nodule": 3}))
    with pytest.raises(ValueError, match="bad.json"):
        load_term_list(bad)


def test_generate_knowledge_writes_atomically_and_refuses_overwrite(tmp_path):
    output = tmp_path / "knowledge.json"
    kb = generate_knowledge({"nodule": ["nodules"], "effusion": []}, fake_lm, output, model_name="/models/fake")
    loaded = MedicalKnowledgeBase.from_json(output)
    assert loaded.terms == kb.terms
    assert loaded.terms["nodule"] == {
        "aliases": ["nodules"],
        "definition": "nodule is a finding.",
        "visual": "nodule looks white.",
    }
    meta = loaded.meta["generated_by"]
    assert meta["model"] == "/models/fake" and meta["prompt"] == DEFAULT_PROMPT_TEMPLATE and meta["date"]
    before = output.read_text()
    with pytest.raises(FileExistsError, match="knowledge.json"):
        generate_knowledge({"x": []}, fake_lm, output, model_name="m")
    assert output.read_text() == before
    generate_knowledge({"mass": []}, fake_lm, output, model_name="m", overwrite=True)
    assert list(MedicalKnowledgeBase.from_json(output).terms) == ["mass"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["knowledge.json"]  # no temp files left


def test_generate_knowledge_bad_answers(tmp_path):
    def flaky(prompt):
        return fake_lm(prompt) if "nodule" in prompt else "I don't know."

    with pytest.raises(ValueError, match="'effusion'"):
        generate_knowledge({"nodule": [], "effusion": []}, flaky, tmp_path / "a.json", model_name="m")
    assert not (tmp_path / "a.json").exists()
    kb = generate_knowledge({"nodule": [], "effusion": []}, flaky, tmp_path / "b.json", model_name="m", on_error="skip")
    assert list(kb.terms) == ["nodule"] and kb.meta["skipped_terms"] == ["effusion"]


def test_script_refuses_existing_output_and_missing_model(tmp_path):
    existing = tmp_path / "out.json"
    existing.write_text("{}")
    script = str(REPO_ROOT / "scripts" / "generate_knowledge.py")
    run = subprocess.run(
        [sys.executable, script, "--model_path", str(tmp_path / "no_model"), "--output", str(existing)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0 and "--overwrite" in run.stderr and existing.read_text() == "{}"
    run = subprocess.run(
        [sys.executable, script, "--model_path", str(tmp_path / "no_model"), "--output", str(tmp_path / "new.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0 and "no_model" in run.stderr and not (tmp_path / "new.json").exists()

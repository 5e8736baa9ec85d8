"""MedicalKnowledgeBase / AddKnowledged and the shipped TGC-Net knowledge file."""

import json
from pathlib import Path

import pytest
import torch
from monai_ext.clip import TINY_CLIP_NAME
from monai_ext.text import AddKnowledged, ClipTokenized, KnowledgeBaseError, MedicalKnowledgeBase

BUNDLE_KNOWLEDGE = Path(__file__).resolve().parents[2] / "bundles" / "tgcnet" / "configs" / "medical_knowledge.json"

TERMS = {
    "consolidation": {"aliases": ["consolidations"], "definition": "Airspace filled.", "visual": "Dense white."},
    "left lung": {"aliases": ["left hemithorax"], "definition": "Patient's left lung.", "visual": "Image right side."},
    "left lower lobe": {"aliases": ["LLL"], "definition": "Bottom left lobe.", "visual": "Left base."},
    "COVID-19": {"aliases": ["covid"], "definition": "SARS-CoV-2 disease.", "visual": "Peripheral GGO."},
    "lung": {"aliases": [], "definition": "Organ.", "visual": "Dark field."},
}


@pytest.fixture
def kb():
    return MedicalKnowledgeBase(TERMS, {"generated_by": "hand-written"})


def test_match_order_case_and_word_boundaries(kb):
    report = "COVID-19: CONSOLIDATION of the Left Lower Lobe, and the left lung has consolidations."
    assert kb.find_terms(report) == ["COVID-19", "consolidation", "left lower lobe", "left lung", "lung"]
    assert kb.match(report, max_items=2) == [
        "COVID-19: SARS-CoV-2 disease. Peripheral GGO.",
        "consolidation: Airspace filled. Dense white.",
    ]
    assert kb.find_terms("lungs are clear; leftlung; covidious; lll") == ["left lower lobe"]
    assert kb.find_terms("left-lower lobe") == ["left lower lobe"]
    assert kb.match("nothing relevant") == []


def test_match_deduplicates_repeated_terms(kb):
    assert len(kb.match("consolidation, consolidations and consolidation again")) == 1


def test_from_json_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(FileNotFoundError, match="missing.json"):
        MedicalKnowledgeBase.from_json(missing)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(KnowledgeBaseError, match="broken.json"):
        MedicalKnowledgeBase.from_json(broken)
    no_visual = tmp_path / "no_visual.json"
    no_visual.write_text(json.dumps({"terms": {"nodule": {"definition": "Round lesion."}}}))
    with pytest.raises(KnowledgeBaseError, match="no_visual.json.*'nodule'.*'visual'"):
        MedicalKnowledgeBase.from_json(no_visual)


def test_json_round_trip(tmp_path, kb):
    path = tmp_path / "kb.json"
    path.write_text(json.dumps(kb.to_dict()))
    again = MedicalKnowledgeBase.from_json(path)
    assert again.terms == kb.terms and again.meta == kb.meta


def test_add_knowledged_pads_to_fixed_length_and_tokenizes(kb):
    transform = AddKnowledged("text", kb, max_items=4)
    out = transform({"text": "Consolidation in the left lung."})
    assert out["knowledge"][:2] == [kb.sentence("consolidation"), kb.sentence("left lung")]
    assert out["knowledge"][3] == "" and len(out["knowledge"]) == 4
    tokens = ClipTokenized("knowledge", "knowledge_tokens", model_name=TINY_CLIP_NAME, allow_empty=True)(out)
    assert tokens["knowledge_tokens"].shape == (4, 77)
    assert (tokens["knowledge_tokens"].ne(0).any(dim=1) == torch.tensor([True, True, True, False])).all()


def test_add_knowledged_disabled_and_bad_input(kb):
    assert AddKnowledged("text", kb, max_items=3, enabled=False)({"text": "consolidation"})["knowledge"] == [""] * 3
    with pytest.raises(TypeError, match="one report string"):
        AddKnowledged("text", kb)({"text": ["a", "b"]})
    with pytest.raises(ValueError, match="knowledge_base"):
        AddKnowledged("text", None)


def test_bundle_knowledge_file():
    kb = MedicalKnowledgeBase.from_json(BUNDLE_KNOWLEDGE)
    assert kb.meta["generated_by"] == "hand-written"
    assert 25 <= len(kb) <= 40
    for term in (
        "infection",
        "pneumonia",
        "consolidation",
        "ground-glass opacity",
        "pleural effusion",
        "bilateral",
        "unilateral",
        "left lung",
        "lower lobe",
        "infected area",
        "COVID-19",
    ):
        assert term in kb.terms
    qata_style = "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."
    assert kb.find_terms(qata_style)[:3] == ["bilateral", "infection", "infected area"]
    assert {"upper lung", "lower lung", "left lung", "right lung"} <= set(kb.find_terms(qata_style))
    # every knowledge sentence fits CLIP's 77-token context
    from monai_ext.clip import get_clip_tokenizer

    tokenizer = get_clip_tokenizer(TINY_CLIP_NAME)
    assert max(len(tokenizer.encode(kb.sentence(t))) + 2 for t in kb.terms) <= 77

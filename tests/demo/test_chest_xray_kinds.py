"""Demo task v2: lesion kinds, reports by clinical term and zone, masks, oracle input, and the pretraining caption
corpus (plain words only, disjoint from the evaluation images)."""

import hashlib
import itertools
import json
import os

import numpy as np
import pytest
from lvit_files import assert_lvit_tables, read_png, tree_bytes
from monai_ext.demo import (
    CAPTION_APPEARANCE,
    CORPUS_SOURCES,
    LESION_KINDS,
    LUNG_ZONES,
    REPORT_PHRASINGS,
    compose_findings_report,
    make_caption_corpus,
    make_chest_xray_kinds_dataset,
    make_fundus_dataset,
    make_kinds_rereported_split,
    mask_for_findings,
    oracle_channels,
    parse_report_findings,
    parse_report_zones,
    render_chest_xray_kinds,
    sample_rng,
)
from monai_ext.text import MedicalKnowledgeBase
from PIL import Image

SIZE = 64
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KNOWLEDGE_V2 = os.path.join(REPO_ROOT, "bundles", "tgcnet", "configs", "medical_knowledge_v2.json")
# Words of the reports' clinical vocabulary, and stems of them, that a caption must never contain.
CLINICAL_WORDS = ("consolid", "ground-glass", "ground glass", "glass", "opacit", "ggo", "nodul", "lesion", "infect")


def _pairs(findings):
    return {(f["kind"], f["zone"]) for f in findings}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("kinds") / "data"
    summary = make_chest_xray_kinds_dataset(out, n_train=8, n_val=2, n_test=4, image_size=SIZE, seed=5)
    with open(out / "datalist.json") as f:
        return str(out), summary, json.load(f)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "corpus"
    summary = make_caption_corpus(out, counts={"chest": 24, "fundus": 8, "cardiac": 8}, held_out=3, image_size=SIZE)
    with open(summary["corpus"]) as f:
        return str(out), summary, json.load(f)


def test_lvit_layout_and_datalist(dataset):
    root, summary, datalist = dataset
    assert summary["counts"] == {"training": 8, "validation": 2, "test": 4}
    assert_lvit_tables(root, datalist)
    for item in itertools.chain(*datalist.values()):
        image, mask, oracle = (
            read_png(root, item["image"]),
            read_png(root, item["label"]),
            read_png(root, item["oracle"]),
        )
        assert image.shape == mask.shape == (SIZE, SIZE) and oracle.shape == (SIZE, SIZE, 3)


def test_report_names_exactly_the_masked_lesions(dataset):
    root, _, datalist = dataset
    for item in itertools.chain(*datalist.values()):
        named, present = item["findings_named"], item["findings_present"]
        assert parse_report_findings(item["text"]) == named
        assert 2 <= len(present) <= 4 and 1 <= len(named) and _pairs(named) <= _pairs(present)
        kind_map, zone_map = read_png(root, item["kind_map"]), read_png(root, item["zone_map"])
        lung_zones = read_png(root, item["lung_zones"])
        # The maps hold every drawn lesion, each (kind, zone) once, inside its own lung zone, and nothing else.
        lesion = kind_map > 0
        assert np.array_equal(lesion, zone_map > 0)
        drawn = {(LESION_KINDS[k - 1], LUNG_ZONES[z - 1]) for k, z in zip(kind_map[lesion], zone_map[lesion])}
        assert drawn == _pairs(present)
        assert np.array_equal(lung_zones[lesion], zone_map[lesion])
        mask = read_png(root, item["label"]) > 0
        assert np.array_equal(mask, mask_for_findings(kind_map, zone_map, named))
        assert mask.any() and not (mask & ~lesion).any()
        assert np.array_equal(read_png(root, item["oracle"]), oracle_channels(lung_zones, named))
        assert item["kind_critical"] == any(
            f["zone"] == g["zone"] for f in named for g in present if (g["kind"], g["zone"]) not in _pairs(named)
        )


def test_kinds_look_different_and_nodules_are_smaller_than_a_patch():
    contrast = {kind: [] for kind in LESION_KINDS}
    for i in range(12):
        image, kind_map, zone_map, lung_zones, findings = render_chest_xray_kinds(sample_rng(3, 0, i), 128, 4)
        image = image.astype(float)
        for finding in findings:
            kind, zone = LESION_KINDS.index(finding["kind"]) + 1, LUNG_ZONES.index(finding["zone"]) + 1
            lesion = (kind_map == kind) & (zone_map == zone)
            clear_lung = (lung_zones == zone) & (kind_map == 0)
            contrast[finding["kind"]].append(image[lesion].mean() - np.median(image[clear_lung]))
            if finding["kind"] == "nodule":
                rows, cols = np.nonzero(lesion)
                assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 10  # well under one 16-pixel ViT patch
    means = {kind: np.mean(values) for kind, values in contrast.items()}
    assert means["consolidation"] > means["ground-glass opacity"] + 40 > 40  # dense vs hazy (uint8 levels)
    assert means["nodule"] > means["ground-glass opacity"] + 40


def test_same_seed_same_bytes_and_sample_independent_of_counts(tmp_path):
    kwargs = dict(n_val=0, n_test=1, image_size=SIZE)
    make_chest_xray_kinds_dataset(tmp_path / "a", n_train=2, seed=1, **kwargs)
    make_chest_xray_kinds_dataset(tmp_path / "b", n_train=2, seed=1, **kwargs)
    make_chest_xray_kinds_dataset(tmp_path / "c", n_train=2, seed=2, **kwargs)
    make_chest_xray_kinds_dataset(tmp_path / "d", n_train=3, seed=1, **kwargs)
    a, b, c, d = (tree_bytes(tmp_path / name) for name in "abcd")
    assert a == b
    assert a["Train_Folder/img/train_0000.png"] != c["Train_Folder/img/train_0000.png"]
    assert all(d[name] == a[name] for name in a if "train_0001" in name or "test_0000" in name)


def test_compose_and_parse_are_inverse_in_every_phrasing():
    rng = np.random.default_rng(0)
    every = [{"kind": k, "zone": z} for k in LESION_KINDS for z in LUNG_ZONES]
    for phrasing in REPORT_PHRASINGS:
        for _ in range(60):
            chosen = rng.choice(len(every), size=int(rng.integers(1, 5)), replace=False)
            findings = [every[j] for j in chosen]
            report = compose_findings_report(findings, rng, phrasing)
            expected = sorted(findings, key=lambda f: (LUNG_ZONES.index(f["zone"]), LESION_KINDS.index(f["kind"])))
            assert parse_report_findings(report) == expected
    example = [{"kind": "nodule", "zone": "upper right"}, {"kind": "consolidation", "zone": "lower left"}]
    assert (
        compose_findings_report(example) == "Consolidation in the lower left lung and a nodule in the upper right lung."
    )


def test_held_out_phrasings_are_never_used_for_training():
    training = REPORT_PHRASINGS["training"]
    frames = REPORT_PHRASINGS["held_out_frames"]
    terms = REPORT_PHRASINGS["held_out_terms"]
    assert not set(frames["frames"]) & set(training["frames"]) and not set(frames["zones"]) & set(training["zones"])
    for kind in LESION_KINDS:
        assert not set(terms["terms"][kind]) & set(training["terms"][kind])
    # And the knowledge file covers every wording: the held-out terms reach their term only through its aliases.
    knowledge = MedicalKnowledgeBase.from_json(KNOWLEDGE_V2)
    for words in REPORT_PHRASINGS.values():
        for kind, phrases in words["terms"].items():
            for phrase in phrases:
                assert knowledge.find_terms(f"There is {phrase} in the upper left lung.") == [kind]


def test_knowledge_v2_describes_each_term_in_caption_words():
    with open(KNOWLEDGE_V2) as f:
        meta = json.load(f)["meta"]
    assert meta["generated_by"] == "hand-written"
    knowledge = MedicalKnowledgeBase.from_json(KNOWLEDGE_V2)
    assert list(knowledge.terms) == list(LESION_KINDS)
    for kind in LESION_KINDS:
        caption_words = set(" ".join(CAPTION_APPEARANCE[kind]).replace(",", " ").split())
        visual_words = set(knowledge.terms[kind]["visual"].lower().rstrip(".").replace(",", " ").split())
        assert visual_words <= caption_words | {"a"}, visual_words - caption_words


def test_rereported_splits(dataset, tmp_path):
    root, _, datalist = dataset
    original = {item["name"]: item for item in datalist["test"]}
    summary = make_kinds_rereported_split(root, tmp_path / "cf", splits="test", phrasing="held_out_terms", seed=1)
    assert summary["counts"]["test"] == len(original)  # every image has >= 2 lesions, so another subset
    with open(tmp_path / "cf" / "datalist.json") as f:
        for item in json.load(f)["test"]:
            source = original[item["name"]]
            named = parse_report_findings(item["text"])
            assert named == item["findings_named"] != source["findings_named"]
            assert _pairs(named) <= _pairs(source["findings_present"])
            kind_map, zone_map = read_png(tmp_path / "cf", item["kind_map"]), read_png(
                tmp_path / "cf", item["zone_map"]
            )
            assert np.array_equal(
                read_png(tmp_path / "cf", item["label"]) > 0, mask_for_findings(kind_map, zone_map, named)
            )
            lung_zones = read_png(tmp_path / "cf", item["lung_zones"])
            assert np.array_equal(read_png(tmp_path / "cf", item["oracle"]), oracle_channels(lung_zones, named))
            assert not any(term in item["text"] for term in ("consolidation", "ground-glass", "a nodule"))

    make_kinds_rereported_split(root, tmp_path / "re", splits="test", mode="rephrased", phrasing="held_out_frames")
    with open(tmp_path / "re" / "datalist.json") as f:
        for item in json.load(f)["test"]:
            assert parse_report_findings(item["text"]) == original[item["name"]]["findings_named"]
            assert "zone of the" in item["text"]
            assert tree_bytes(tmp_path / "re")[item["label"]] == tree_bytes(root)[item["label"]]

    make_kinds_rereported_split(root, tmp_path / "generic", splits=["test"], mode="generic", prompt="Lungs.")
    with open(tmp_path / "generic" / "datalist.json") as f:
        assert {item["text"] for item in json.load(f)["test"]} == {"Lungs."}
    with pytest.raises(ValueError, match="phrasing"):
        make_kinds_rereported_split(root, tmp_path / "bad", phrasing="other")


@pytest.mark.parametrize(
    "findings",
    [[], [{"kind": "mass", "zone": "upper left"}], [{"kind": "nodule", "zone": "upper centre"}], "nodule"]
    + [[{"kind": "nodule", "zone": "upper left"}] * 2],
)
def test_compose_rejects_bad_findings(findings):
    with pytest.raises(ValueError):
        compose_findings_report(findings)


def test_parse_rejects_a_kind_without_a_zone():
    with pytest.raises(ValueError, match="one lesion kind and one lung zone"):
        parse_report_findings("Consolidation in the lungs.")


def test_captions_use_plain_words_only(corpus):
    _, _, items = corpus
    knowledge = MedicalKnowledgeBase.from_json(KNOWLEDGE_V2)
    captions = [(item, caption) for item in itertools.chain(*items.values()) for caption in item["captions"]]
    assert len({caption for _, caption in captions}) > len(captions) / 3  # several phrasings
    for item, caption in captions:
        assert knowledge.find_terms(caption) == [], caption
        assert not any(word in caption.lower() for word in CLINICAL_WORDS), caption
        if item["source"] == "chest":  # they say where each lesion is, in the reports' zone words
            assert parse_report_zones(caption) == sorted({f["zone"] for f in item["findings"]}, key=LUNG_ZONES.index)


def test_corpus_layout_sources_and_determinism(corpus, tmp_path):
    root, summary, items = corpus
    assert summary["sources"] == CORPUS_SOURCES == {"chest": None, "fundus": "domain_a", "cardiac": "bssfp"}
    assert [len(items["training"]), len(items["held_out"])] == [40, 9]
    for item in itertools.chain(*items.values()):
        image = read_png(root, item["image"])
        assert image.shape[:2] == (SIZE, SIZE) and image.ndim == (3 if item["source"] == "fundus" else 2)
        assert len(item["captions"]) == 3 and item["content"].startswith(item["source"])
    again = make_caption_corpus(
        tmp_path / "again", counts={"chest": 24, "fundus": 8, "cardiac": 8}, held_out=3, image_size=SIZE
    )
    assert tree_bytes(again["out_dir"]) == tree_bytes(root)


def test_corpus_is_disjoint_from_evaluation_images(corpus, tmp_path):
    """The corpus keys its random streams apart from every generator's evaluation images, for any seed."""
    root, _, items = corpus
    corpus_hashes = {
        hashlib.sha256(read_png(root, item["image"]).tobytes()).hexdigest() for item in itertools.chain(*items.values())
    }
    evaluation = []
    for seed in (0, 1):
        make_chest_xray_kinds_dataset(
            tmp_path / f"cxr{seed}", n_train=24, n_val=3, n_test=3, image_size=SIZE, seed=seed
        )
        make_fundus_dataset(tmp_path / f"fundus{seed}", n_per_domain=8, image_size=SIZE, seed=seed, domains="domain_a")
        for folder in (tmp_path / f"cxr{seed}", tmp_path / f"fundus{seed}"):
            evaluation += [
                os.path.join(d, n) for d, _, names in os.walk(folder) for n in names if "img" in d or "images" in d
            ]
    assert len(evaluation) == 2 * (30 + 8)
    for path in evaluation:
        assert hashlib.sha256(np.asarray(Image.open(path)).tobytes()).hexdigest() not in corpus_hashes

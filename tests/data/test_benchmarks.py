"""The published DG releases read with their methods' splits: SLAug's MS-CMRSeg (patients bSSFP 1-35 train, 36-45
validation, LGE 6-45 test) and CCSDG's RIGA+ (the site lists, rater-1 masks), on the synthetic stand-ins of the demo
helpers, which have the releases' folders, files and label values."""

import nibabel as nib
import numpy as np
import pytest
from monai_ext.data import (
    LabelMapError,
    check_label_map,
    evaluation_records,
    load_text_datalist,
    prepare_ccsdg_riga,
    prepare_slaug_mscmrseg,
)
from monai_ext.demo import make_ccsdg_riga_release, make_slaug_mscmrseg_release
from PIL import Image


@pytest.fixture(scope="module")
def slaug_release(tmp_path_factory):
    root = tmp_path_factory.mktemp("slaug") / "processed"
    make_slaug_mscmrseg_release(root, image_size=32, slices=2)
    return root


@pytest.fixture(scope="module")
def riga_release(tmp_path_factory):
    root = tmp_path_factory.mktemp("riga") / "RIGAPlus"
    make_ccsdg_riga_release(root, n_train=3, n_test=2, image_size=48)
    return root


def test_slaug_stand_in_has_the_release_layout_and_values(slaug_release):
    for folder in ("bSSFP", "LGE"):
        assert sorted(p.name for p in (slaug_release / folder).iterdir()) == sorted(
            f"{kind}_{i}.nii.gz" for kind in ("image", "label") for i in range(1, 46)
        )
    label = np.asarray(nib.load(slaug_release / "LGE" / "label_6.nii.gz").dataobj)
    assert set(np.unique(label)) == {0, 1, 2, 3}
    labels = sorted(str(p) for p in (slaug_release / "LGE").glob("label_*.nii.gz"))
    check_label_map(labels, "slaug", "cardiac")  # 1 myocardium enclosing 2 LV
    with pytest.raises(LabelMapError, match="left ventricle \\(value 1\\) should lie inside"):
        check_label_map(labels, "index", "cardiac")


def test_slaug_patient_split(slaug_release, tmp_path):
    domains = prepare_slaug_mscmrseg(str(slaug_release), str(tmp_path / "slices"), label_map="slaug")
    assert sorted(domains) == ["LGE", "bSSFP"]

    def volumes(domain, key):
        records = evaluation_records(domains[domain]["datalist"], key, domains[domain]["base_dir"])
        return sorted({r["name"] for r in records}, key=lambda n: int(n.split("_")[1])), records

    train, records = volumes("bSSFP", "training")
    assert train == [f"bSSFP_{i}" for i in range(1, 36)]
    assert {r["slice_index"] for r in records} == {0, 1} and {r["num_slices"] for r in records} == {2}
    assert volumes("bSSFP", "validation")[0] == [f"bSSFP_{i}" for i in range(36, 46)]
    test, records = volumes("LGE", "test")
    assert test == [f"LGE_{i}" for i in range(6, 46)] and len(records) == 80
    assert load_text_datalist(domains["LGE"]["datalist"], key="test", base_dir=domains["LGE"]["base_dir"])


def test_slaug_release_missing_patients_are_named(slaug_release, tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder 'bSSFP' in .*present: \\[\\]"):
        prepare_slaug_mscmrseg(str(tmp_path), str(tmp_path / "out"))
    partial = tmp_path / "partial"
    make_slaug_mscmrseg_release(partial, patients=40, image_size=32, slices=1)
    with pytest.raises(
        FileNotFoundError, match="lacks 20 file\\(s\\) of the protocol's patient split.*image_41.nii.gz"
    ):
        prepare_slaug_mscmrseg(str(partial), str(tmp_path / "out"))


def test_riga_stand_in_and_the_ccsdg_lists(riga_release, tmp_path):
    lines = (riga_release / "Magrabia_test.csv").read_text().splitlines()
    assert lines == [
        "image,mask",
        "RIGA/Magrabia/MagrabiaMale/image4.tif,RIGA-mask/Magrabia/MagrabiaMale/image4.tif",
        "RIGA/Magrabia/MagrabiaMale/image5.tif,RIGA-mask/Magrabia/MagrabiaMale/image5.tif",
    ]
    mask = np.asarray(Image.open(riga_release / "RIGA-mask" / "Magrabia" / "MagrabiaMale" / "image4-1.tif"))
    assert mask.shape == (48, 48) and set(np.unique(mask)) == {0, 128, 255}
    assert np.asarray(Image.open(riga_release / "RIGA" / "Magrabia" / "MagrabiaMale" / "image4.tif")).shape == (
        48,
        48,
        3,
    )
    domains = prepare_ccsdg_riga(str(riga_release), str(tmp_path), label_map="ccsdg")
    assert list(domains) == ["BinRushed", "Magrabia", "MESSIDOR_Base1", "MESSIDOR_Base2", "MESSIDOR_Base3"]
    test = evaluation_records(domains["Magrabia"]["datalist"], "test", domains["Magrabia"]["base_dir"])
    assert [r["label"].split("RIGAPlus/")[1] for r in test] == [
        "RIGA-mask/Magrabia/MagrabiaMale/image4-1.tif",
        "RIGA-mask/Magrabia/MagrabiaMale/image5-1.tif",
    ]
    assert len(evaluation_records(domains["MESSIDOR_Base2"]["datalist"], "training", str(riga_release))) == 3
    with pytest.raises(LabelMapError, match="Label map 'refuge' contradicts .* of domain 'BinRushed'"):
        prepare_ccsdg_riga(str(riga_release), str(tmp_path / "b"), sites=["BinRushed"], label_map="refuge")


def test_riga_list_problems_are_all_named(riga_release, tmp_path):
    with pytest.raises(FileNotFoundError, match="has 2 problem\\(s\\).*BinRushed_train.csv' not found"):
        prepare_ccsdg_riga(str(tmp_path), str(tmp_path / "w"), sites=["BinRushed"])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "Site_train.csv").write_text("image,mask\nRIGA/a.tif,RIGA-mask/a.tif\n../outside.tif,RIGA-mask/b.tif\n")
    (broken / "Site_test.csv").write_text("image,mask\nRIGA/c.tif,RIGA-mask/c.png\n")
    with pytest.raises(FileNotFoundError) as caught:
        prepare_ccsdg_riga(str(broken), str(tmp_path / "w"), sites=["Site"])
    message = str(caught.value)
    assert "has 4 problem(s)" in message
    assert "row 2: '" in message and "RIGA-mask/a-1.tif' does not exist" in message
    assert "outside the dataset root" in message and "expected 'image,mask' with a .tif mask" in message
    with pytest.raises(ValueError, match="raters 1 to 6"):
        prepare_ccsdg_riga(str(riga_release), str(tmp_path), rater=7)

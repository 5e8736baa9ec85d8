"""Both bundles' training datasets are MONAI CacheDatasets: caching the deterministic loading steps must not change a
single training or validation sample, and the cache must really hold the loaded images."""

import os

import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import CacheDataset
from monai.utils import set_determinism
from monai_ext.demo import make_chest_xray_dataset, make_fundus_dataset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZE = 64


@pytest.fixture(scope="module", params=["tgcnet", "vlsanet"])
def bundle_overrides(request, tmp_path_factory):
    name = request.param
    root = str(tmp_path_factory.mktemp(f"cache_{name}"))
    if name == "tgcnet":
        make_chest_xray_dataset(root, n_train=6, n_val=3, n_test=1, image_size=SIZE, seed=4)
        data = {"dataset_dir": root}
    else:
        make_fundus_dataset(root, n_per_domain=6, image_size=SIZE, seed=4, domains=["domain_a"])
        domain = os.path.join(root, "domain_a")
        data = {"dataset_dir": domain, "datalist_file": os.path.join(domain, "datalist.json")}
    bundle = os.path.join(REPO, "bundles", name)
    configs = [os.path.join(bundle, "configs", f) for f in ("train.json", "demo.json")]
    return configs, {"bundle_root": bundle, "image_size": SIZE, **data}


def _samples(configs, overrides, cache_rate, part):
    set_determinism(seed=0)  # the Compose's random state is drawn when the config is parsed
    parser = ConfigParser()
    parser.read_config(configs)
    parser.update({**overrides, "cache_rate": cache_rate})
    dataset = parser.get_parsed_content(f"{part}#dataset")
    samples = [dataset[i] for _epoch in range(2) for i in range(len(dataset))]
    set_determinism(seed=None)
    return dataset, samples


@pytest.mark.parametrize("part", ["train", "validate"])
def test_cached_samples_equal_uncached_samples(bundle_overrides, part):
    configs, overrides = bundle_overrides
    uncached, plain = _samples(configs, overrides, 0.0, part)
    cached, fast = _samples(configs, overrides, 1.0, part)
    assert isinstance(cached, CacheDataset)
    assert len(uncached._cache) == 0 and len(cached._cache) == len(cached) > 0
    assert len(plain) == len(fast)
    for a, b in zip(plain, fast):
        assert sorted(a) == sorted(b)
        for key, value in a.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, b[key]), key
            elif isinstance(value, str):
                assert value == b[key], key
    if part == "train":  # the comparison covers the random augmentations: the two epochs differ
        half = len(plain) // 2
        assert any(not torch.equal(plain[i]["image"], plain[half + i]["image"]) for i in range(half))

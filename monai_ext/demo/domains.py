"""Synthetic multi-domain demo sets (fundus, cardiac MRI) laid out as the domain-generalisation experiment reads them."""

from __future__ import annotations

import os

from monai_ext.data.domains import prepare_cardiac_domains, prepare_fundus_domains
from monai_ext.demo.cardiac import make_cardiac_dataset
from monai_ext.demo.fundus import make_fundus_dataset

__all__ = ["DEMO_DOMAINS", "make_demo_data"]


DEMO_DOMAINS = {"fundus": ["domain_a", "domain_b", "domain_c", "domain_d"], "cardiac": ["bssfp", "lge", "t2"]}


def make_demo_data(
    task: str, root: str, n_per_domain: int | None = None, image_size: int | None = None, seed: int = 0
) -> dict[str, dict[str, str]]:
    """Synthetic demo data for ``task`` ("fundus" or "cardiac") in ``root`` unless already there; every domain ends up
    with ``root/<domain>/datalist.json`` (cardiac volumes are generated in ``root/volumes`` and sliced to 2D).

    Returns:
        ``{domain: {"datalist": path, "base_dir": folder}}`` for every demo domain.
    """
    root = os.path.abspath(root)
    domains = DEMO_DOMAINS.get(task)
    if domains is None:
        raise ValueError(f"task must be one of {list(DEMO_DOMAINS)}, got {task!r}.")
    if task == "fundus":
        if not all(os.path.isfile(os.path.join(root, d, "datalist.json")) for d in domains):
            make_fundus_dataset(root, n_per_domain=n_per_domain or 24, image_size=image_size or 128, seed=seed)
        return prepare_fundus_domains(root, root, domains)
    volumes = os.path.join(root, "volumes")
    if not all(os.path.isfile(os.path.join(volumes, d, "datalist.json")) for d in domains):
        make_cardiac_dataset(volumes, n_per_domain=n_per_domain or 8, image_size=image_size or 96, slices=4, seed=seed)
    return prepare_cardiac_domains(volumes, root, domains)

"""Single-source domain generalisation with the VLSA-Net bundle: train on one domain, test on the unseen ones.

Every training and evaluation is a run of the bundle's own configs (``train.json`` [+ ``cardiac.json``]
[+ ``demo.json``], then ``evaluate.json``) with overrides; the results go to ``<output_dir>/dg_results.md`` (Markdown
table), ``dg_results.csv`` and ``dg_results.json``, with each variant's checkpoint and per-domain reports in
``<output_dir>/<variant>/``. Cardiac results are per volume (each volume's slice predictions stacked back, 3D Dice
and HD95 in mm), with the per-slice means in a second, labelled table (``dg_results_per_slice.csv``).

Examples::

    # synthetic fundus demo (generated in <output_dir>/data when missing), CPU, tiny CLIP
    python scripts/evaluate_dg.py --task fundus --output_dir dg_fundus
    # all ablation variants on the same budget, one table
    python scripts/evaluate_dg.py --task fundus --ablation --output_dir dg_fundus_ablation
    # synthetic cardiac demo (bSSFP -> LGE, T2)
    python scripts/evaluate_dg.py --task cardiac --output_dir dg_cardiac
    # real data (GPU, ViT-B/16 weights in the local cache), e.g. DoFE/RIGA+-style fundus folders
    python scripts/evaluate_dg.py --task fundus --data_root /data/Fundus --source Domain1 --label_map refuge \\
        --demo False --output_dir dg_fundus_real
    # a published protocol on its release: splits, label map, input size and aggregation fixed
    python scripts/evaluate_dg.py --protocol mscmrseg_slaug --data_root SLAug/data/cardiac/processed --output_dir dg_slaug
    python scripts/evaluate_dg.py --protocol riga_ccsdg --data_root /data/RIGAPlus --source Magrabia --output_dir dg_riga

Before any training the label map is checked against the label files of every domain used (background the most
frequent class, the optic cup inside the disc rim / the LV cavity inside the myocardium); a map that contradicts them
stops with an error naming the files, the values and the map that fits. ``--check_label_map False`` skips the check.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys

import fire

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from monai_ext.apps import DG_PROTOCOLS, LABEL_MAPS, VARIANTS, run_domain_generalization, slice_size  # noqa: E402
from monai_ext.data import prepare_cardiac_domains, prepare_fundus_domains  # noqa: E402
from monai_ext.demo import DEMO_DOMAINS, make_demo_data  # noqa: E402
from monai_ext.flags import checked_flags  # noqa: E402

BUNDLE = os.path.join(REPO_ROOT, "bundles", "vlsanet")


def _as_list(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _protocol_settings(
    protocol: str, task: str | None, data_root: str | None, source: str | None, targets, label_map: str | None
) -> tuple:
    """The protocol and its task, source and label map; refuses settings that contradict it."""
    if protocol not in DG_PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(DG_PROTOCOLS)}, got {protocol!r}.")
    chosen = DG_PROTOCOLS[protocol]
    contradictions = [
        f"--{name} {value}"
        for name, value, fixed in (("task", task, chosen.task), ("label_map", label_map, chosen.label_map))
        if value is not None and value != fixed
    ]
    if targets is not None and _as_list(targets) != list(chosen.targets):
        contradictions.append(f"--targets {targets}")
    if source is not None and source not in chosen.sources:
        contradictions.append(f"--source {source} (the protocol's sources: {', '.join(chosen.sources)})")
    if contradictions:
        raise ValueError(f"--protocol {protocol} fixes {', '.join(contradictions)} otherwise: {chosen.description}.")
    if data_root is None:
        raise ValueError(
            f"--protocol {protocol} runs on its release: pass --data_root (for a dry run, a synthetic stand-in from "
            f"python scripts/make_demo_data.py {chosen.name}_release --out_dir <folder>)."
        )
    return chosen, chosen.task, source or chosen.sources[0], chosen.label_map


def main(
    task: str | None = None,
    output_dir: str = "dg_output",
    data_root: str | None = None,
    source: str | None = None,
    targets: str | list[str] | None = None,
    variants: str | list[str] | None = None,
    ablation: bool = False,
    demo: bool | None = None,
    max_epochs: int | None = None,
    image_size: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    n_per_domain: int | None = None,
    label_map: str | None = None,
    check_label_map: bool = True,
    target_key: str | None = None,
    protocol: str | None = None,
    seed: int = 0,
    data_seed: int = 0,
    overrides: dict | None = None,
    subprocess: bool = False,
    overwrite: bool = False,
    bundle_dir: str = BUNDLE,
) -> str:
    """Run the DG evaluation; returns the path of ``dg_results.md``.

    Args:
        task: "fundus" (optic disc/cup; the default) or "cardiac" (LV/MYO/RV on 2D slices of short-axis volumes).
        output_dir: everything goes here; must be empty or missing unless ``overwrite``.
        data_root: folder with one sub-folder per domain (layouts in bundles/vlsanet/docs/README.md); default: the
            synthetic demo data, generated in ``<output_dir>/data`` when missing.
        source: training domain (default: the first demo domain, ``domain_a`` / ``bssfp``).
        targets: unseen test domains, comma separated (default: all other domains).
        variants: comma-separated subset of full,no_em,no_text,no_alignment,no_em_no_text (default: full).
        ablation: run all five variants on the same budget.
        demo: add ``demo.json`` (CPU, tiny CLIP, small images); default True without ``data_root``.
        max_epochs, image_size, batch_size, learning_rate: training budget overrides.
        n_per_domain: images (fundus) or volumes (cardiac) per demo domain.
        label_map: how label files encode classes: "index" (0,1,2[,3]; default), "refuge" (255 bg, 128 disc rim,
            0 cup), "ccsdg" (CCSDG's RIGA+: 0 bg, 255 disc rim, 128 cup), "mscmrseg" (500 LV, 200 MYO, 600 RV) or
            "slaug" (SLAug's MS-CMRSeg release: 1 MYO, 2 LV, 3 RV).
        check_label_map: check the label map against every domain's label files before training (stops with the
            map that fits when it contradicts them); False skips the check.
        target_key: datalist key of the target-domain images to test on; "all" (the default without a protocol)
            tests on whole domains.
        protocol: a published benchmark's protocol (``mscmrseg_slaug``, ``riga_ccsdg``;
            :data:`monai_ext.apps.DG_PROTOCOLS`): reads ``data_root`` as its release with its splits, fixes task,
            targets, label map, input size, target list and aggregation; ``source`` picks among its sources.
            ``image_size`` / ``target_key`` given as well replace the protocol's and are recorded in
            ``dg_results.json`` as deviations.
        seed: random seed of training.
        data_seed: random seed of the synthetic demo data.
        overrides: further bundle config overrides, e.g. ``"{'freeze_clip': 'partial', 'tune_last_blocks': 2}"``.
        subprocess: run every step as ``python -m monai.bundle run`` in a subprocess instead of in-process.
        overwrite: delete an existing non-empty ``output_dir`` first.
        bundle_dir: the VLSA-Net bundle.
    """
    chosen = None
    if protocol is not None:
        chosen, task, source, label_map = _protocol_settings(protocol, task, data_root, source, targets, label_map)
        targets = list(chosen.targets)
    task = task or "fundus"
    if task not in DEMO_DOMAINS:
        raise ValueError(f"task must be one of {list(DEMO_DOMAINS)}, got {task!r}.")
    if label_map is not None and label_map not in LABEL_MAPS:
        raise ValueError(f"label_map must be one of {list(LABEL_MAPS)}, got {label_map!r}.")
    output_dir = os.path.abspath(output_dir)
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        if not overwrite:
            raise FileExistsError(f"{output_dir} exists and is not empty; pass --overwrite to replace it.")
        shutil.rmtree(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    demo = data_root is None if demo is None else bool(demo)
    variant_list = list(VARIANTS) if ablation else (_as_list(variants) or ["full"])

    print(f"[DG] preparing {task} domains ...", flush=True)
    if chosen is not None:
        print(f"[DG] protocol {chosen.name}: {chosen.description}", flush=True)
        domains = chosen.prepare(data_root, os.path.join(output_dir, "data"))
    elif data_root is None:
        domains = make_demo_data(
            task,
            os.path.join(output_dir, "data", task),
            n_per_domain=n_per_domain,
            image_size=image_size,
            seed=data_seed,
        )
    elif task == "fundus":
        domains = prepare_fundus_domains(data_root, os.path.join(output_dir, "data"))
    else:
        domains = prepare_cardiac_domains(data_root, os.path.join(output_dir, "data", "slices"))
    source = source or DEMO_DOMAINS[task][0]
    print(f"[DG] domains: {', '.join(domains)}; source: {source}; variants: {', '.join(variant_list)}", flush=True)

    configs = ["train.json"] + (["cardiac.json"] if task == "cardiac" else []) + (["demo.json"] if demo else [])
    run_overrides: dict = {"seed": int(seed)}
    for key, value in (
        ("max_epochs", max_epochs),
        ("image_size", image_size),
        ("batch_size", batch_size),
        ("learning_rate", learning_rate),
    ):
        if value is not None:
            run_overrides[key] = value
    if label_map is not None:
        run_overrides["label_orig_values"] = list(LABEL_MAPS[label_map])
        run_overrides["label_target_values"] = list(LABEL_MAPS[label_map].values())
    task_info = {"task": task, "command": " ".join(shlex.quote(a) for a in sys.argv), "data_root": data_root}
    if chosen is not None:
        fixed_size = chosen.image_size or _release_size(slice_size(domains[source]), image_size, domains[source])
        deviations = {
            name: {"protocol": fixed, "used": given}
            for name, fixed, given in (
                ("image_size", fixed_size, image_size),
                ("target_key", chosen.target_key, target_key),
            )
            if given is not None and given != fixed
        }
        run_overrides = {**dict(chosen.overrides), "image_size": fixed_size, **run_overrides}
        target_key = target_key or chosen.target_key
        task_info["protocol"] = {
            **chosen.summary(),
            "image_size_used": run_overrides["image_size"],
            "deviations": deviations,
        }
        if deviations:
            print(f"[DG] not the protocol's settings, recorded in dg_results.json: {deviations}", flush=True)
    run_overrides.update(dict(overrides or {}))
    result = run_domain_generalization(
        bundle_dir,
        domains,
        source=source,
        output_dir=output_dir,
        targets=_as_list(targets),
        variants=variant_list,
        configs=configs,
        overrides=run_overrides,
        target_key=target_key or "all",
        subprocess=subprocess,
        check_label_map=check_label_map,
        task_info=task_info,
    )
    print(f"[DG] table: {result['paths']['markdown']}\n[DG] csv:   {result['paths']['csv']}", flush=True)
    return result["paths"]["markdown"]


def _release_size(size: tuple[int, int], image_size: int | None, domain: dict) -> int | str:
    """The release's slice size as the protocol's input size (the network takes squares)."""
    if size[0] == size[1]:
        return size[0]
    if image_size is None:
        raise ValueError(
            f"The slices of '{domain['datalist']}' are {size[0]} x {size[1]}; the protocol keeps the release's size, "
            "which the network takes square: pass --image_size (recorded as a deviation)."
        )
    return f"{size[0]} x {size[1]}"


if __name__ == "__main__":
    fire.Fire(checked_flags(main))

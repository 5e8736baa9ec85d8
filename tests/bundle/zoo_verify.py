"""The steps of the MONAI Model Zoo's ``ci/verify_bundle.py`` for one unpacked bundle, with MONAI's APIs, run as a
script from a Model Zoo-like root (``<root>/models/<bundle>``), as the Zoo runs its own (a fresh process, the bundle
folder first on ``sys.path``, so that ``"$import scripts"`` finds the archive's vendored code)::

    python zoo_verify.py --bundle tgcnet --mode full --schema meta_schema_20240725.json [--configs tiny.json]

``min``: large files (``download_large_files``: an existing file is checked against its hash), the necessary and the
preferred files, version and changelog, the metadata against the schema (the Zoo downloads it to ``eval/schema.json``;
here an offline copy). ``full`` adds ``verify_net_in_out`` and ``ckpt_export`` of ``network_def`` without
``use_trace``, i.e. ``torch.jit.script`` (the Zoo's ``verify_torchscript``), then loads the export and compares
it with the eager network holding ``models/model.pt`` (which the Zoo does not). ``--configs`` are overlays merged on
``configs/inference.json`` (the tests' tiny CLIP); the Zoo passes ``configs/inference.json`` alone. The Zoo's
``full`` mode also checks workflow properties of the apps in ``supported_apps`` against property files of its own
repository, of which it holds none; the bundles' unit tests (``ci/unit_tests``) check the train, evaluate and
inference workflows' properties. Each step prints a line; a failing step raises.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from monai.bundle import ConfigParser, ckpt_export, download_large_files, verify_metadata, verify_net_in_out
from monai.networks import copy_model_state

NECESSARY = ("configs/metadata.json", "LICENSE")
PREFERRED = ("models/model.pt", "configs/inference.json")


def verify(bundle_path: str, mode: str, schema: str, overlays: list[str], atol: float = 1e-4) -> None:
    sys.path.insert(0, bundle_path)  # as verify_bundle.py: bundle-local code ("$import scripts") is importable
    # MONAI finds large_files.yml itself (given large_file_name, MONAI 1.6.1's download_large_files fails).
    download_large_files(bundle_path=bundle_path)
    missing = [f for f in (*NECESSARY, *PREFERRED) if not os.path.isfile(os.path.join(bundle_path, f))]
    if missing:
        raise ValueError(f"{bundle_path}: necessary or preferred files missing: {missing}")
    print("directory is verified correctly.")
    meta_file = os.path.join(bundle_path, "configs", "metadata.json")
    with open(meta_file, encoding="utf-8") as f:
        metadata = json.load(f)
    if metadata.get("version") not in metadata.get("changelog", {}):
        raise ValueError(f"{meta_file}: version {metadata.get('version')!r} has no changelog entry")
    print("version and changelog are verified correctly.")
    verify_metadata(meta_file=meta_file, filepath=schema)
    print("metadata format is verified correctly.")
    if mode == "min":
        return

    configs = [os.path.join(bundle_path, "configs", "inference.json"), *overlays]
    verify_net_in_out(net_id="network_def", meta_file=meta_file, config_file=configs, bundle_root=bundle_path)
    print("data shape is verified correctly.")
    exported = os.path.join(bundle_path, "models", "verify_model.ts")
    checkpoint = os.path.join(bundle_path, "models", "model.pt")
    ckpt_export(
        net_id="network_def",
        filepath=exported,
        ckpt_file=checkpoint,
        meta_file=meta_file,
        config_file=configs,
        bundle_root=bundle_path,
    )
    scripted = torch.jit.load(exported, map_location="cpu")
    print("export weights into TorchScript module successfully.")
    parser = ConfigParser()
    parser.read_config(configs)
    parser.read_meta(meta_file)
    parser["bundle_root"] = bundle_path
    network = parser.get_parsed_content("network_def")
    # What ckpt_export loads (key_in_ckpt ""): the file as a state dict; every network weight must be in it.
    _, updated, unchanged = copy_model_state(network, torch.load(checkpoint, map_location="cpu", weights_only=True))
    if unchanged:
        raise ValueError(f"{checkpoint} lacks {len(unchanged)} weights of network_def, e.g. {unchanged[:3]}")
    spec = metadata["network_data_format"]["inputs"]["image"]
    image = torch.rand(1, int(spec["num_channels"]), *spec["spatial_shape"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((scripted(image) - network.eval()(image)).abs().max())
    if not diff <= atol:
        raise ValueError(f"{exported} differs from the eager network by {diff:.3g} (> {atol})")
    print(f"TorchScript output matches the eager network (max abs diff {diff:.3g}, {len(updated)} weights loaded).")
    print(f"bundle code: {sys.modules['monai_ext'].__file__}")


if __name__ == "__main__":
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--bundle", required=True, help="bundle name (folder under --models_path)")
    args.add_argument("--models_path", default="models")
    args.add_argument("--mode", choices=("min", "full"), default="full")
    args.add_argument("--schema", required=True, help="the metadata schema (a local copy)")
    args.add_argument("--configs", nargs="*", default=[], help="overlays merged on configs/inference.json")
    options = args.parse_args()
    verify(os.path.join(options.models_path, options.bundle), options.mode, options.schema, options.configs)

"""TorchScript and ONNX export of a bundle's trained network with its image and tokenized-text inputs.

The network is built from the bundle's ``configs/inference.json`` (plus extra configs and overrides) and its checkpoint
is loaded safely (:func:`monai_ext.bundle.parser.load_bundle_network`). The exported model takes positional inputs
``(image, *extra)`` where the extra inputs are the bundle's ``prepare_batch#extra_keys`` in order (TGC-Net:
``text_tokens [1, 77]`` int64 and ``knowledge_tokens [1, K, 77]`` int64, all-zero rows for missing knowledge) and
returns the logits. Example text inputs are produced by the bundle's own text transforms (knowledge lookup and CLIP
tokenization), so a user feeds the exported model exactly what the bundle feeds the network.

Both formats are traced on the example (batch 1). The batch dimension is free (the ONNX model declares it as the
dynamic axis ``batch``; the traced TorchScript graph computes its shapes from the input), and the export check runs a
batch of 2 as well; the other dimensions (the config's image size, context length and number of knowledge rows) are
fixed. Values (pixels and tokens, hence any report) are free. Frozen text encoders cache their
outputs per report (:class:`monai_ext.text.TextEmbeddingCache`); the cache is switched off while exporting, otherwise
the traced graph would hold the example report's embedding as a constant and ignore the text input.
"""

from __future__ import annotations

import copy
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from monai_ext.bundle.parser import (
    bundle_parser,
    load_bundle_network,
    network_input_keys,
    resolve_config,
    text_only_transforms,
)
from monai_ext.checkpoint import load_state_dict_checked
from monai_ext.io import atomic_write
from monai_ext.text.cache import TextEmbeddingCache

__all__ = [
    "ExportWrapper",
    "check_ckpt_export",
    "disabled_text_caches",
    "example_inputs",
    "export_bundle_model",
    "export_onnx",
    "export_torchscript",
    "run_onnx",
    "run_torchscript",
]


class ExportWrapper(nn.Module):
    """Positional front end for export: ``forward(image, *extra)`` calls ``network(image, **dict(zip(names, extra)))``."""

    def __init__(self, network: nn.Module, input_names: Sequence[str] = ()):
        super().__init__()
        self.network = network
        self.input_names = list(input_names)

    def forward(self, image: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        if len(extra) != len(self.input_names):
            raise ValueError(f"Expected {len(self.input_names)} extra inputs {self.input_names}, got {len(extra)}.")
        out = self.network(image, **dict(zip(self.input_names, extra)))
        if isinstance(out, (list, tuple)):
            out = out[0]
        elif isinstance(out, Mapping):
            out = next(iter(out.values()))
        return out


@contextmanager
def disabled_text_caches(module: nn.Module) -> Iterator[None]:
    """Temporarily set every submodule's text-embedding ``cache`` to None (traced graphs must compute the text path)."""
    saved = []
    for sub in module.modules():
        if isinstance(getattr(sub, "cache", None), TextEmbeddingCache):
            saved.append((sub, sub.cache))
            sub.cache = None
    try:
        yield
    finally:
        for sub, cache in saved:
            sub.cache = cache


@contextmanager
def _mha_fastpath(enabled: bool) -> Iterator[None]:
    """The fused MultiheadAttention kernel (eval + no_grad) has no ONNX symbolic; the exporter needs the plain ops."""
    backends = getattr(torch.backends, "mha", None)
    if backends is None:
        yield
        return
    previous = backends.get_fastpath_enabled()
    backends.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        backends.set_fastpath_enabled(previous)


def example_inputs(
    parser: Any, text: str | None = None, seed: int = 0, image_key: str = "image"
) -> dict[str, torch.Tensor]:
    """``{"image": [1, C, *spatial], <extra input>: [1, ...]}`` for a bundle: a random image of the metadata's input
    shape (side ``image_size`` when the config has one) and the text inputs the bundle's preprocessing makes from
    ``text`` (default: the config's ``default_prompt``)."""
    spec = parser.get(f"_meta_#network_data_format#inputs#{image_key}", None) or {}
    channels = int(spec.get("num_channels", 1))
    spatial = [int(s) for s in spec.get("spatial_shape", [224, 224])]
    size = parser.get_parsed_content("image_size") if "image_size" in parser else None
    if isinstance(size, int) and not isinstance(size, bool):  # the config's resize target (e.g. a demo's smaller size)
        spatial = [size] * len(spatial)
    generator = torch.Generator().manual_seed(seed)
    inputs = {image_key: torch.rand(1, channels, *spatial, generator=generator)}
    keys = network_input_keys(parser, image_key=image_key)
    if not keys:
        return inputs
    if text is None:
        text = parser.get_parsed_content("default_prompt") if "default_prompt" in parser else None
    if not text:
        raise ValueError("The network takes text inputs: give an example text (the config has no default_prompt).")
    item = text_only_transforms(parser.get_parsed_content("preprocessing"), image_key)({"text": text})
    for keyword, key in keys.items():
        if key not in item:
            raise KeyError(f"The bundle's text transforms did not produce '{key}' (network input '{keyword}').")
        inputs[keyword] = torch.as_tensor(item[key])[None]
    return inputs


def _extra_files(parser: Any, names: Sequence[str], inputs: Mapping[str, torch.Tensor]) -> dict[str, str]:
    description = {
        "inputs": [
            {"name": name, "shape": list(inputs[name].shape), "dtype": str(inputs[name].dtype).replace("torch.", "")}
            for name in names
        ],
        "outputs": [{"name": "pred"}],
        "note": "traced: the first (batch) dimension is free, the others are fixed to these; token inputs come from "
        "the bundle's text transforms",
    }
    meta = copy.deepcopy(parser.get("_meta_", {}) or {})
    # The metadata describes the bundle's default size; the export is traced at the configured one.
    spatial = list(inputs[names[0]].shape[2:])
    for section in ("inputs", "outputs"):
        for spec in (meta.get("network_data_format", {}).get(section) or {}).values():
            if isinstance(spec, dict) and spec.get("type") == "image":
                spec["spatial_shape"] = spatial
    return {"inputs.json": json.dumps(description, indent=2), "metadata.json": json.dumps(meta, indent=2, default=str)}


def export_torchscript(
    network: nn.Module,
    inputs: Mapping[str, torch.Tensor],
    path: str,
    extra_files: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> torch.jit.ScriptModule:
    """Trace ``network`` on ``inputs`` (image first) and save it atomically with ``extra_files`` (``torch.jit.load``
    with ``_extra_files`` reads them back)."""
    names = list(inputs)
    wrapper = ExportWrapper(network, names[1:]).eval()
    args = tuple(inputs[name] for name in names)
    with disabled_text_caches(network), torch.no_grad():
        traced = torch.jit.trace(wrapper, args, check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files=dict(extra_files or {}))
    with atomic_write(path, mode="wb", overwrite=overwrite) as f:
        f.write(buffer.getvalue())
    return traced


def export_onnx(
    network: nn.Module,
    inputs: Mapping[str, torch.Tensor],
    path: str,
    opset_version: int = 17,
    metadata: Mapping[str, str] | None = None,
    overwrite: bool = False,
    dynamic_batch: bool = True,
) -> None:
    """Export ``network`` to ONNX (TorchScript-based exporter), inputs named as the keys of ``inputs``, output
    ``pred``; with ``dynamic_batch`` the first dimension of every input and of ``pred`` is the dynamic axis ``batch``,
    all other dimensions are those of ``inputs``. ``metadata`` goes to the model's ``metadata_props``. Written
    atomically."""
    import onnx

    names = list(inputs)
    wrapper = ExportWrapper(network, names[1:]).eval()
    args = tuple(inputs[name] for name in names)
    buffer = io.BytesIO()
    with disabled_text_caches(network), _mha_fastpath(False), torch.no_grad():
        torch.onnx.export(
            wrapper,
            args,
            buffer,
            input_names=names,
            output_names=["pred"],
            dynamic_axes={name: {0: "batch"} for name in [*names, "pred"]} if dynamic_batch else None,
            opset_version=opset_version,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_write(path, mode="wb", overwrite=overwrite) as f:
        f.write(model.SerializeToString())


def run_torchscript(path: str, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Load a TorchScript export and run it on ``inputs`` (image first, then the extra inputs in export order)."""
    module = torch.jit.load(path, map_location="cpu")
    with torch.no_grad():
        return module(*inputs.values())


def run_onnx(path: str, inputs: Mapping[str, torch.Tensor]) -> np.ndarray:
    """Run an ONNX export with onnxruntime (CPU) on ``inputs`` (fed by name)."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {name: np.ascontiguousarray(value.detach().cpu().numpy()) for name, value in inputs.items()}
    expected = [i.name for i in session.get_inputs()]
    missing = [name for name in expected if name not in feed]
    if missing:
        raise KeyError(f"ONNX model '{path}' needs inputs {expected}; missing {missing}.")
    return session.run(None, {name: feed[name] for name in expected})[0]


def _run_export(fmt: str, path: str, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return run_torchscript(path, inputs) if fmt == "torchscript" else torch.from_numpy(run_onnx(path, inputs))


def export_bundle_model(
    bundle_dir: str,
    output_dir: str,
    formats: str | Sequence[str] = ("torchscript", "onnx"),
    checkpoint: str | None = None,
    config_files: str | Sequence[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    text: str | None = None,
    opset_version: int = 17,
    check: bool = True,
    atol: float = 1e-4,
    overwrite: bool = False,
    name: str = "model",
) -> dict[str, Any]:
    """Export a bundle's trained network to ``<output_dir>/<name>.ts`` and/or ``<name>.onnx``.

    With ``check``, each export is run on the example inputs and on a batch of 2 (the example and another random
    image with the same report) and compared with PyTorch (max absolute difference must stay within ``atol``, else
    ``RuntimeError``).

    Returns:
        ``{"torchscript": path, "onnx": path, "inputs": {name: shape}, "max_abs_diff": {format: value}}`` (formats
        not asked for are left out).

    Example::

        export_bundle_model("bundles/tgcnet", "exported", checkpoint="bundles/tgcnet/models/model.pt")
    """
    formats = [formats] if isinstance(formats, str) else list(formats)
    unknown = [f for f in formats if f not in ("torchscript", "onnx")]
    if unknown or not formats:
        raise ValueError(f"formats must be 'torchscript' and/or 'onnx', got {formats}.")
    paths = {f: os.path.join(output_dir, f"{name}.{'ts' if f == 'torchscript' else 'onnx'}") for f in formats}
    if not overwrite:
        for path in paths.values():
            if os.path.lexists(path):
                raise FileExistsError(f"Output '{path}' already exists; pass overwrite=True to replace it.")
    parser = bundle_parser(bundle_dir, config_files, overrides)
    network = load_bundle_network(parser, checkpoint, "cpu")
    inputs = example_inputs(parser, text)
    extra_files = _extra_files(parser, list(inputs), inputs)
    if check:
        second = example_inputs(parser, text, seed=1)
        checks = [inputs, {name: torch.cat([inputs[name], second[name]]) for name in inputs}]
        with torch.no_grad():
            references = [ExportWrapper(network, list(inputs)[1:])(*batch.values()) for batch in checks]
    result: dict[str, Any] = {"inputs": {k: list(v.shape) for k, v in inputs.items()}, "max_abs_diff": {}}
    for fmt, path in paths.items():
        if fmt == "torchscript":
            export_torchscript(network, inputs, path, extra_files, overwrite=overwrite)
        else:
            export_onnx(network, inputs, path, opset_version, metadata=extra_files, overwrite=overwrite)
        result[fmt] = path
        if check:
            outputs = [_run_export(fmt, path, batch) for batch in checks]
            diff = max(float((out.float() - ref.float()).abs().max()) for out, ref in zip(outputs, references))
            result["max_abs_diff"][fmt] = diff
            if not diff <= atol:
                raise RuntimeError(
                    f"{fmt} export '{path}' differs from PyTorch by {diff:.3g} (> atol {atol}) on "
                    "the example or on a batch of 2."
                )
    return result


def check_ckpt_export(
    bundle_dir: str,
    config_files: Sequence[str],
    ckpt_file: str,
    filepath: str,
    net_id: str = "network_def",
    atol: float = 1e-4,
    seed: int = 0,
) -> float:
    """Run MONAI's ``ckpt_export`` as the Model Zoo CI does (``torch.jit.script``: no ``use_trace``), load the result
    with ``torch.jit.load`` and compare it with the eager network on a random image of the metadata's input shape.

    Args:
        bundle_dir: bundle folder; ``config_files`` are paths or names under ``<bundle>/configs``.

    Returns:
        the max absolute difference (``RuntimeError`` when above ``atol``).
    """
    from monai.bundle import ckpt_export

    bundle_dir = os.path.abspath(bundle_dir)
    files = [resolve_config(bundle_dir, name) for name in config_files]
    meta_file = os.path.join(bundle_dir, "configs", "metadata.json")
    parser = bundle_parser(bundle_dir, files[1:], base_config=files[0])
    spec = parser.get("_meta_#network_data_format#inputs#image", None) or {}
    shape = [1, int(spec.get("num_channels", 1)), *[int(s) for s in spec.get("spatial_shape", [224, 224])]]
    ckpt_export(
        net_id=net_id,
        filepath=filepath,
        ckpt_file=ckpt_file,
        meta_file=meta_file,
        config_file=files,
        bundle_root=bundle_dir,
    )
    scripted = torch.jit.load(filepath, map_location="cpu")
    network = parser.get_parsed_content(net_id)
    load_state_dict_checked(network, ckpt_file)
    network.eval()
    image = torch.rand(*shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        diff = float((scripted(image).float() - network(image).float()).abs().max())
    if not diff <= atol:
        raise RuntimeError(f"TorchScript export '{filepath}' differs from the eager network by {diff:.3g} (> {atol}).")
    return diff

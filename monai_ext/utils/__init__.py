"""Shared utilities: atomic outputs, safe checkpoint loading, dataset path checks and overlay pictures."""

from .io import (
    CheckpointError,
    CheckpointNotFoundError,
    PathOutsideRootError,
    atomic_save,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    check_within_root,
    extract_state_dict,
    load_state_dict_checked,
    safe_torch_load,
    sha256_file,
)
from .visualize import render_overlay, save_overlay_grid, save_overlay_png
from .flags import checked_flags, ensure_flag
from .export import ExportWrapper, example_inputs, export_bundle_model, export_onnx, export_torchscript
from .packaging import package_bundle, verify_bundle_archive, vendored_requirements

__all__ = [
    "ExportWrapper",
    "example_inputs",
    "export_bundle_model",
    "export_onnx",
    "export_torchscript",
    "package_bundle",
    "verify_bundle_archive",
    "vendored_requirements",
    "CheckpointError",
    "CheckpointNotFoundError",
    "PathOutsideRootError",
    "atomic_save",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "checked_flags",
    "ensure_flag",
    "check_within_root",
    "extract_state_dict",
    "load_state_dict_checked",
    "render_overlay",
    "safe_torch_load",
    "save_overlay_grid",
    "save_overlay_png",
    "sha256_file",
]

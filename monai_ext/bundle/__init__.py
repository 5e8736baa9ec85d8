"""Bundle tooling, apart from the runtime: config parsing, network loading, export, Model Zoo packaging, running bundles
in a subprocess and MONAI Label app preparation. Nothing in a bundle's configs imports this package."""

from .export import (
    ExportWrapper,
    check_ckpt_export,
    disabled_text_caches,
    example_inputs,
    export_bundle_model,
    export_onnx,
    export_torchscript,
    run_onnx,
    run_torchscript,
)
from .monailabel import Overrides, prepare_app_bundle
from .packaging import (
    MANIFEST_NAME,
    archive_large_files,
    bundle_requirements,
    check_weights,
    check_weights_url,
    config_modules,
    config_references,
    large_file_paths,
    package_bundle,
    vendored_files,
    vendored_requirements,
    verify_bundle_archive,
)
from .parser import (
    bundle_parser,
    default_checkpoint,
    load_bundle_network,
    network_input_keys,
    resolve_config,
    text_only_transforms,
)
from .pins import check_pins, metadata_pins
from .runner import bundle_run_command, run_bundle

__all__ = [
    "archive_large_files",
    "bundle_parser",
    "bundle_requirements",
    "bundle_run_command",
    "check_ckpt_export",
    "check_pins",
    "check_weights",
    "check_weights_url",
    "config_modules",
    "config_references",
    "default_checkpoint",
    "disabled_text_caches",
    "example_inputs",
    "export_bundle_model",
    "export_onnx",
    "export_torchscript",
    "ExportWrapper",
    "large_file_paths",
    "load_bundle_network",
    "MANIFEST_NAME",
    "metadata_pins",
    "network_input_keys",
    "Overrides",
    "package_bundle",
    "prepare_app_bundle",
    "resolve_config",
    "run_bundle",
    "run_onnx",
    "run_torchscript",
    "text_only_transforms",
    "vendored_files",
    "vendored_requirements",
    "verify_bundle_archive",
]

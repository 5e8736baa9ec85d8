"""Applications built on the bundles: prediction with your own report, the domain-generalisation experiment (with
the published benchmarks' protocols) and medical-knowledge generation with a local language model."""

from .dg_protocols import DG_PROTOCOLS, DGProtocol, slice_size
from .domain_generalization import (
    LABEL_MAPS,
    VARIANTS,
    check_label_map_of_configs,
    evaluates_per_volume,
    evaluation_regions,
    format_dg_table,
    run_domain_generalization,
)
from .knowledge_generation import (
    DEFAULT_PROMPT_TEMPLATE,
    build_prompt,
    generate_knowledge,
    load_local_generator,
    load_term_list,
    parse_answer,
)
from .predict import (
    IMAGE_COLUMNS,
    TEXT_COLUMNS,
    BundlePredictor,
    PredictionResult,
    PredictionSummary,
    describe_inputs,
    input_format,
    output_paths,
    predict_csv,
    read_prediction_csv,
)

__all__ = [
    "DG_PROTOCOLS",
    "DGProtocol",
    "slice_size",
    "build_prompt",
    "BundlePredictor",
    "check_label_map_of_configs",
    "DEFAULT_PROMPT_TEMPLATE",
    "describe_inputs",
    "evaluates_per_volume",
    "evaluation_regions",
    "format_dg_table",
    "generate_knowledge",
    "IMAGE_COLUMNS",
    "input_format",
    "LABEL_MAPS",
    "load_local_generator",
    "load_term_list",
    "output_paths",
    "parse_answer",
    "predict_csv",
    "PredictionResult",
    "PredictionSummary",
    "read_prediction_csv",
    "run_domain_generalization",
    "TEXT_COLUMNS",
    "VARIANTS",
]

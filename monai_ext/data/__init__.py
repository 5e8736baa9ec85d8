"""Dataset readers and transforms: LViT text tables, decathlon datalists with reports, checked image loading
(PNG/JPEG, NIfTI, DICOM), mask checks 3D volume slicing for 2D models, per-domain datalists for domain generalisation,
label maps checked against the label files before training, random intensity curves for single-source domain
generalisation (SLAug-style), and the releases of published DG benchmarks (SLAug's MS-CMRSeg, CCSDG's RIGA+) read
with their splits.
"""

from monai_ext.data.benchmarks import RIGA_SITES, SLAUG_MSCMRSEG_SPLITS, prepare_ccsdg_riga, prepare_slaug_mscmrseg
from monai_ext.data.datalist import (
    datalist_keys,
    evaluation_records,
    is_valid_text,
    load_text_datalist,
    training_records,
    validate_text_datalist,
    write_text_datalist,
)
from monai_ext.data.domains import (
    check_domain_labels,
    prepare_cardiac_domains,
    prepare_fundus_domains,
    slice_volume_groups,
)
from monai_ext.data.inference_records import inference_records
from monai_ext.data.label_maps import (
    LABEL_CLASSES,
    LABEL_MAP_DESCRIPTIONS,
    LABEL_MAPS,
    MSCMRSEG_LABEL_MAP,
    LabelClasses,
    LabelMapError,
    check_label_map,
    known_label_releases,
    label_map_from_values,
    label_map_name,
    sample_label_files,
)
from monai_ext.data.lvit import find_lvit_text_table, load_lvit_split, lvit_split_name, validate_lvit_split
from monai_ext.data.readers import (
    CheckedLoadImage,
    CheckedLoadImaged,
    ImageNotFoundError,
    ImageReadError,
    PydicomSeriesReader,
    ShapeMismatchError,
    is_dicom_path,
    match_channels,
    missing_dicom_decoders,
)
from monai_ext.data.streaming import SkipFailedDataset, describe_item
from monai_ext.data.transforms import (
    BinarizeMask,
    BinarizeMaskd,
    LabelValueError,
    RandIntensityCurve,
    RandIntensityCurved,
    RandomTextd,
    RecordSpacingd,
    SelectOutput,
    SelectOutputd,
    ValidateLabelValues,
    ValidateLabelValuesd,
)
from monai_ext.data.validation import DatasetValidationError, ValidationReport, check_loadable
from monai_ext.data.volume import VolumeSlicer, expand_volume_records, slice_volume, stack_slices
from monai_ext.data.writers import SafeSaveImaged, atomic_image_writer, compact_dtype, write_mask, write_nifti

__all__ = [
    "RIGA_SITES",
    "SLAUG_MSCMRSEG_SPLITS",
    "prepare_ccsdg_riga",
    "prepare_slaug_mscmrseg",
    "slice_volume_groups",
    "LABEL_CLASSES",
    "LABEL_MAP_DESCRIPTIONS",
    "LABEL_MAPS",
    "MSCMRSEG_LABEL_MAP",
    "LabelClasses",
    "LabelMapError",
    "check_domain_labels",
    "check_label_map",
    "known_label_releases",
    "label_map_from_values",
    "label_map_name",
    "sample_label_files",
    "datalist_keys",
    "evaluation_records",
    "prepare_cardiac_domains",
    "prepare_fundus_domains",
    "training_records",
    "BinarizeMask",
    "BinarizeMaskd",
    "CheckedLoadImage",
    "CheckedLoadImaged",
    "DatasetValidationError",
    "ImageNotFoundError",
    "ImageReadError",
    "LabelValueError",
    "PydicomSeriesReader",
    "RandIntensityCurve",
    "RandIntensityCurved",
    "RandomTextd",
    "RecordSpacingd",
    "SafeSaveImaged",
    "SelectOutput",
    "SelectOutputd",
    "ShapeMismatchError",
    "SkipFailedDataset",
    "ValidateLabelValues",
    "ValidateLabelValuesd",
    "ValidationReport",
    "VolumeSlicer",
    "atomic_image_writer",
    "check_loadable",
    "compact_dtype",
    "describe_item",
    "expand_volume_records",
    "find_lvit_text_table",
    "inference_records",
    "is_dicom_path",
    "missing_dicom_decoders",
    "is_valid_text",
    "load_lvit_split",
    "load_text_datalist",
    "lvit_split_name",
    "match_channels",
    "slice_volume",
    "stack_slices",
    "validate_lvit_split",
    "validate_text_datalist",
    "write_mask",
    "write_nifti",
    "write_text_datalist",
]

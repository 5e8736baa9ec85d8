"""Text machinery: tokenizer transforms, frozen text-embedding cache and medical domain knowledge."""

from .cache import TextEmbeddingCache
from .knowledge import AddKnowledged, KnowledgeBaseError, MedicalKnowledgeBase
from .report_file import SidecarReportd, read_sidecar_report, sidecar_report_path
from .tokenize import ClipTokenize, ClipTokenized, HFTokenize, HFTokenized, TextInputError

__all__ = [
    "AddKnowledged",
    "ClipTokenize",
    "ClipTokenized",
    "HFTokenize",
    "HFTokenized",
    "KnowledgeBaseError",
    "MedicalKnowledgeBase",
    "SidecarReportd",
    "TextEmbeddingCache",
    "TextInputError",
    "read_sidecar_report",
    "sidecar_report_path",
]

"""Text machinery: tokenizer transforms, report files and default prompts, the frozen text-embedding cache and
medical domain knowledge."""

from .cache import TextEmbeddingCache
from .knowledge import AddKnowledged, KnowledgeBaseError, MedicalKnowledgeBase
from .report_file import SidecarReportd, read_sidecar_report, sidecar_report_path
from .tokenize import ClipTokenize, ClipTokenized, HFTokenize, HFTokenized, TextInputError
from .transforms import DefaultTextd, TokensToMetad

__all__ = [
    "AddKnowledged",
    "ClipTokenize",
    "ClipTokenized",
    "DefaultTextd",
    "HFTokenize",
    "HFTokenized",
    "KnowledgeBaseError",
    "MedicalKnowledgeBase",
    "SidecarReportd",
    "TextEmbeddingCache",
    "TextInputError",
    "TokensToMetad",
    "read_sidecar_report",
    "sidecar_report_path",
]

"""Medical domain knowledge: short definitions and visual descriptions of report terms, matched in reports.

Knowledge file format (JSON)::

    {
      "meta": {"generated_by": "hand-written"},            # or {"model": ..., "prompt": ..., "date": ...}
      "terms": {
        "consolidation": {
          "aliases": ["consolidations", "consolidative"],
          "definition": "Alveolar air replaced by fluid, pus, blood or cells.",
          "visual": "Homogeneous opacity that obscures vessels, often with air bronchograms."
        }
      }
    }
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["AddKnowledged", "KnowledgeBaseError", "MedicalKnowledgeBase"]


class KnowledgeBaseError(ValueError):
    """A knowledge file is not valid JSON or does not follow the knowledge format."""


class MedicalKnowledgeBase:
    """Terms with aliases, a definition and a visual description; finds the knowledge relevant to a report.

    Args:
        terms: ``{term: {"aliases": [...], "definition": str, "visual": str}}``.
        meta: provenance (``{"generated_by": "hand-written"}`` or the model, prompt and date that produced it).
        source: where the terms came from (used in error messages).

    Example::

        kb = MedicalKnowledgeBase.from_json("bundles/tgcnet/configs/medical_knowledge.json")
        kb.match("Patchy ground-glass opacity in the left lower lobe.", max_items=2)
    """

    def __init__(self, terms: Mapping[str, Mapping], meta: Mapping | None = None, source: str = "<dict>"):
        if not isinstance(terms, Mapping) or not terms:
            raise KnowledgeBaseError(f"{source}: 'terms' must be a non-empty mapping of term -> entry.")
        self.source = source
        self.meta = dict(meta or {})
        self.terms: dict[str, dict] = {}
        for term, entry in terms.items():
            self.terms[term] = self._check_entry(term, entry)
        self._patterns = {term: self._pattern(term, entry["aliases"]) for term, entry in self.terms.items()}

    def _check_entry(self, term, entry) -> dict:
        where = f"{self.source}: term {term!r}"
        if not isinstance(term, str) or not term.strip():
            raise KnowledgeBaseError(f"{self.source}: term names must be non-empty strings, got {term!r}.")
        if not isinstance(entry, Mapping):
            raise KnowledgeBaseError(f"{where} must map to an object, got {type(entry).__name__}.")
        for field in ("definition", "visual"):
            if not isinstance(entry.get(field), str) or not entry[field].strip():
                raise KnowledgeBaseError(f"{where} needs a non-empty string {field!r}.")
        aliases = entry.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
            raise KnowledgeBaseError(f"{where}: 'aliases' must be a list of non-empty strings.")
        return {"aliases": list(aliases), "definition": entry["definition"].strip(), "visual": entry["visual"].strip()}

    @staticmethod
    def _pattern(term: str, aliases: Sequence[str]) -> re.Pattern:
        # Longest names first so "left lower lobe" wins over "left lower"; (?<!\w)/(?!\w) act as word boundaries
        # that also work for names ending in punctuation or digits ("COVID-19").
        names = sorted({term, *aliases}, key=len, reverse=True)
        flexible = [r"[\s\-]+".join(re.escape(part) for part in re.split(r"[\s\-]+", n.strip())) for n in names]
        return re.compile(r"(?<!\w)(?:" + "|".join(flexible) + r")(?!\w)", re.IGNORECASE)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> MedicalKnowledgeBase:
        """Read a knowledge file (see the module docstring for the format)."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"Knowledge file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise KnowledgeBaseError(f"Knowledge file {path} is not valid UTF-8 JSON: {err}") from err
        if not isinstance(data, Mapping) or "terms" not in data:
            raise KnowledgeBaseError(f"Knowledge file {path} must be an object with a 'terms' entry.")
        return cls(data["terms"], data.get("meta"), source=str(path))

    def to_dict(self) -> dict:
        """The JSON-serialisable form read by :meth:`from_json`."""
        return {"meta": self.meta, "terms": self.terms}

    def sentence(self, term: str) -> str:
        """Knowledge sentence of one term: ``"<term>: <definition> <visual>"``."""
        entry = self.terms[term]
        return f"{term}: {entry['definition']} {entry['visual']}"

    def find_terms(self, report: str) -> list[str]:
        """Terms mentioned in ``report`` (term or alias, case-insensitive, whole words), in order of first mention."""
        if not isinstance(report, str):
            raise TypeError(f"Reports must be strings, got {type(report).__name__}.")
        found = []
        for term, pattern in self._patterns.items():
            hit = pattern.search(report)
            if hit is not None:
                found.append((hit.start(), -(hit.end() - hit.start()), term))
        return [term for _, _, term in sorted(found)]

    def match(self, report: str, max_items: int | None = None) -> list[str]:
        """Knowledge sentences for the terms in ``report``, in order of appearance, deduplicated, at most ``max_items``."""
        sentences = list(dict.fromkeys(self.sentence(term) for term in self.find_terms(report)))
        return sentences if max_items is None else sentences[:max_items]

    def __len__(self) -> int:
        return len(self.terms)


class AddKnowledged(MapTransform):
    """Add the knowledge sentences matching a report, as a fixed-length list so that batches collate.

    Args:
        keys: keys holding the report text.
        knowledge_base: a :class:`MedicalKnowledgeBase` or the path of a knowledge JSON file.
        output_key: where the list goes (one per key); ``None`` uses ``"<key>_knowledge"``.
        max_items: length of the list; missing entries are ``""`` (tokenize with ``allow_empty=True``).
        enabled: when False every entry is ``""`` (ablation without knowledge, same data shapes).

    Example::

        add = AddKnowledged("text", "bundles/tgcnet/configs/medical_knowledge.json", max_items=4)
        add({"text": "Bilateral consolidation."})["knowledge"]  # ["bilateral: ...", "consolidation: ...", "", ""]
    """

    def __init__(
        self,
        keys: KeysCollection = "text",
        knowledge_base: MedicalKnowledgeBase | str | os.PathLike | None = None,
        output_key: str | Sequence[str] | None = "knowledge",
        max_items: int = 4,
        enabled: bool = True,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}.")
        if enabled and knowledge_base is None:
            raise ValueError("AddKnowledged needs knowledge_base (a MedicalKnowledgeBase or a JSON path) when enabled.")
        if isinstance(knowledge_base, (str, os.PathLike)):
            knowledge_base = MedicalKnowledgeBase.from_json(knowledge_base)
        self.knowledge_base = knowledge_base
        self.max_items = max_items
        self.enabled = enabled
        if output_key is None:
            self.output_keys: list[Hashable] = [f"{key}_knowledge" for key in self.keys]
        else:
            self.output_keys = [output_key] if isinstance(output_key, str) else list(output_key)
        if len(self.output_keys) != len(self.keys):
            raise ValueError(f"output_key needs one name per key: keys {list(self.keys)}, output_key {output_key}.")

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key, out in self.key_iterator(d, self.output_keys):
            report = d[key]
            if not isinstance(report, str):
                raise TypeError(
                    f"AddKnowledged: {key!r} must hold one report string (pick one prompt first, e.g. RandomTextd), "
                    f"got {type(report).__name__}."
                )
            items = self.knowledge_base.match(report, self.max_items) if self.enabled else []
            d[out] = items + [""] * (self.max_items - len(items))
        return d

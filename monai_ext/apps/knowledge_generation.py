"""Regenerate a knowledge file with a local causal language model (used by ``scripts/generate_knowledge.py``).

The model is asked, term by term, for a one-sentence definition and a one-sentence visual description in a fixed
two-line format; the answer is parsed, and the file records the model, the prompt template and the date in ``meta``.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from monai_ext.io import atomic_write
from monai_ext.text.knowledge import KnowledgeBaseError, MedicalKnowledgeBase

__all__ = [
    "DEFAULT_PROMPT_TEMPLATE",
    "build_prompt",
    "generate_knowledge",
    "load_term_list",
    "load_local_generator",
    "parse_answer",
]

DEFAULT_PROMPT_TEMPLATE = (
    "You are a radiologist writing a glossary for chest X-ray and thoracic CT reports.\n"
    "Term: {term}{aliases}\n"
    "Answer with exactly two lines:\n"
    "Definition: <one sentence saying what the term means>\n"
    "Visual: <one sentence describing how it looks on a chest X-ray or CT>\n"
)

# "Definition: ...", "**Definition:** ...", "1. **Visual appearance** - ...", "- Visual: ..."
_FIELD_LINE = re.compile(
    r"^\s*(?:\d+[.)])?[*#\-\s]*(definition|visual(?:\s+appearance)?|appearance)\s*\**\s*[:\-]\s*\**\s*(.+)$", re.I
)


def build_prompt(term: str, aliases: Sequence[str] = (), template: str = DEFAULT_PROMPT_TEMPLATE) -> str:
    """Fill ``template`` (placeholders ``{term}`` and ``{aliases}``) for one term."""
    alias_text = f" (also written: {', '.join(aliases)})" if aliases else ""
    return template.format(term=term, aliases=alias_text)


def parse_answer(answer: str, term: str = "") -> dict[str, str]:
    """Extract ``{"definition", "visual"}`` from a model answer in the ``Definition: ...`` / ``Visual: ...`` format.

    Markdown decorations (``**Definition:**``, bullets) are tolerated; only the first sentence of each field is kept.

    Raises:
        ValueError: a field is missing or empty (the message names the term and shows the answer).
    """
    fields: dict[str, str] = {}
    for line in answer.splitlines():
        hit = _FIELD_LINE.match(line)
        if hit is None:
            continue
        name = "definition" if hit.group(1).lower() == "definition" else "visual"
        value = hit.group(2).strip().strip("*").strip()
        if name not in fields and value:
            first_sentence = re.split(r"(?<=[.!?])\s+", value)[0]
            fields[name] = first_sentence
    missing = [f for f in ("definition", "visual") if f not in fields]
    if missing:
        raise ValueError(
            f"Answer for term {term!r} lacks {missing} (expected 'Definition: ...' / 'Visual: ...'): {answer!r:.300}"
        )
    return fields


def load_term_list(path: str | os.PathLike) -> dict[str, list[str]]:
    """Terms and aliases from a knowledge file, a JSON list of terms, or a JSON object ``{term: [aliases]}``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Term list not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise KnowledgeBaseError(f"Term list {path} is not valid JSON: {err}") from err
    if isinstance(data, Mapping) and "terms" in data:
        return {t: list(e.get("aliases", [])) for t, e in MedicalKnowledgeBase.from_json(path).terms.items()}
    if isinstance(data, list) and data and all(isinstance(t, str) and t.strip() for t in data):
        return {t: [] for t in data}
    if isinstance(data, Mapping) and data and all(isinstance(a, list) for a in data.values()):
        return {t: [str(a) for a in aliases] for t, aliases in data.items()}
    raise KnowledgeBaseError(
        f"Term list {path} must be a knowledge file, a list of terms or an object {{term: [aliases]}}."
    )


def load_local_generator(
    model_path: str | os.PathLike, max_new_tokens: int = 96, device: str = "cpu", trust_remote_code: bool = False
) -> Callable[[str], str]:
    """A greedy ``prompt -> answer`` function over a Hugging Face causal LM stored in a LOCAL folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_path = str(Path(model_path).expanduser())
    if not Path(model_path).is_dir():
        raise FileNotFoundError(f"Language model folder not found: {model_path}")
    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True, trust_remote_code=trust_remote_code)
    model = (
        AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True, trust_remote_code=trust_remote_code)
        .to(device)
        .eval()
    )

    def generate(prompt: str) -> str:
        if getattr(tokenizer, "chat_template", None):
            prompt = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        inputs = tokenizer(prompt, return_tensors="pt").to(device)
        with torch.no_grad():
            output = model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id
            )
        return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    return generate


def generate_knowledge(
    terms: Mapping[str, Sequence[str]],
    generate_fn: Callable[[str], str],
    output: str | os.PathLike,
    model_name: str,
    template: str = DEFAULT_PROMPT_TEMPLATE,
    overwrite: bool = False,
    on_error: str = "raise",
) -> MedicalKnowledgeBase:
    """Ask ``generate_fn`` about every term and write the knowledge file atomically.

    Args:
        terms: ``{term: aliases}``.
        generate_fn: ``prompt -> answer`` (see :func:`load_local_generator`).
        output: knowledge JSON to write; an existing file is kept unless ``overwrite``.
        model_name: recorded in ``meta`` (path or name of the language model).
        template: prompt template, recorded in ``meta``.
        on_error: ``"raise"`` on an unparsable answer, or ``"skip"`` the term (skipped terms listed in ``meta``).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
    output = Path(output).expanduser()
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass overwrite=True (--overwrite) to replace it.")
    entries, skipped = {}, []
    for term, aliases in terms.items():
        answer = generate_fn(build_prompt(term, aliases, template))
        try:
            fields = parse_answer(answer, term)
        except ValueError:
            if on_error == "raise":
                raise
            skipped.append(term)
            continue
        entries[term] = {"aliases": list(aliases), **fields}
    meta = {
        "generated_by": {
            "model": model_name,
            "prompt": template,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    }
    if skipped:
        meta["skipped_terms"] = skipped
    knowledge = MedicalKnowledgeBase(entries, meta, source=str(output))
    with atomic_write(output, mode="w", overwrite=overwrite) as f:
        json.dump(knowledge.to_dict(), f, indent=2, ensure_ascii=False)
        f.write("\n")
    return knowledge

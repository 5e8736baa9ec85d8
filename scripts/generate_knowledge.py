"""Regenerate a medical knowledge file (term -> definition + visual description) with a LOCAL causal language model.

Nothing is downloaded: ``model_path`` is a folder written by ``save_pretrained`` (any Hugging Face causal LM, e.g. a
copy of a small instruction-tuned model). Each term is asked for in a fixed two-line format (``Definition: ...`` /
``Visual: ...``), the answers are parsed, and the output's ``meta.generated_by`` records the model, the prompt template
and the date. The output is written atomically and an existing file is only replaced with ``--overwrite``.

Usage::

    python scripts/generate_knowledge.py --model_path /models/qwen2.5-1.5b-instruct \
        --terms bundles/tgcnet/configs/medical_knowledge.json --output knowledge_generated.json

``--terms`` is a knowledge file (its terms and aliases are reused), a JSON list of terms, or ``{term: [aliases]}``.
Options: ``--template`` (a prompt file with ``{term}`` and ``{aliases}``), ``--max_new_tokens``, ``--device``,
``--trust_remote_code`` (only for model folders that need their own code), ``--on_error skip`` (drop terms whose
answer cannot be parsed, listed in ``meta.skipped_terms``).
"""

from __future__ import annotations

import os
import sys

import fire

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from monai_ext.apps.knowledge_generation import (  # noqa: E402
    DEFAULT_PROMPT_TEMPLATE,
    generate_knowledge,
    load_local_generator,
    load_term_list,
)
from monai_ext.flags import checked_flags  # noqa: E402

TGCNET_KNOWLEDGE = os.path.join(REPO_ROOT, "bundles", "tgcnet", "configs", "medical_knowledge.json")


def main(
    model_path: str,
    terms: str = TGCNET_KNOWLEDGE,
    output: str = "medical_knowledge_generated.json",
    template: str | None = None,
    max_new_tokens: int = 96,
    device: str = "cpu",
    trust_remote_code: bool = False,
    on_error: str = "raise",
    overwrite: bool = False,
) -> str:
    """Generate the knowledge file and return its path (see the module docstring)."""
    if os.path.exists(output) and not overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it.")
    prompt = DEFAULT_PROMPT_TEMPLATE
    if template is not None:
        with open(template, encoding="utf-8") as f:
            prompt = f.read()
    term_list = load_term_list(terms)
    generate = load_local_generator(model_path, max_new_tokens, device, trust_remote_code)
    knowledge = generate_knowledge(
        term_list,
        generate,
        output,
        model_name=os.path.abspath(model_path),
        template=prompt,
        overwrite=overwrite,
        on_error=on_error,
    )
    print(f"Wrote {len(knowledge)} terms to {output}")
    return output


if __name__ == "__main__":
    fire.Fire(checked_flags(main))

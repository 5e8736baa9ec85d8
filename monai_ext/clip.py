"""Offline-first loading of CLIP backbones through open_clip.

Every network in this package gets its CLIP model from :func:`create_clip`, which never waits on the network:

* ``checkpoint="path/to/weights.safetensors"`` (or ``.pt``/``.bin`` saved by ``torch.save``): the architecture named by
  ``model_name`` is built and the file is loaded with ``weights_only=True``; OpenAI's own downloads (``ViT-B-16.pt``,
  TorchScript archives) are read with ``torch.jit.load``, as open_clip does, and only their weights are kept;
* ``pretrained="laion2b_s34b_b88k"`` (an open_clip tag): the weights are looked up in local caches only (Hugging Face
  hub cache layout, the open_clip URL cache ``~/.cache/clip`` and ``cache_dir``); when they are not there a
  :class:`PretrainedWeightsNotFoundError` lists what was looked for and how to provide it;
* neither: random initialisation, with a warning (tests and demos).

``TINY_CLIP_NAME`` names a few-million-parameter CLIP shipped as a config in ``monai_ext/networks/configs``; it is
registered with open_clip the first time :func:`create_clip` or :func:`get_clip_tokenizer` needs it.
"""

from __future__ import annotations

import logging
import os
import zipfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import open_clip
import torch
from monai_ext.checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    extract_state_dict,
    load_state_dict_checked,
    safe_torch_load,
    strip_wrapper_prefix,
)

__all__ = [
    "TINY_CLIP_NAME",
    "ALIGNED_TINY_CLIP_CHECKPOINT",
    "ClipCheckpointError",
    "PretrainedWeightsNotFoundError",
    "create_clip",
    "find_pretrained_weights",
    "get_clip_tokenizer",
    "load_clip_state_dict",
    "register_local_clip_configs",
]

logger = logging.getLogger(__name__)

TINY_CLIP_NAME = "monai-textseg-tiny-clip"
CLIP_CONFIG_DIR = Path(__file__).resolve().parent / "clip_configs"
# The tiny configuration pretrained on the demo caption corpus (scripts/pretrain_clip.py; record beside it).
ALIGNED_TINY_CLIP_CHECKPOINT = str(Path(__file__).resolve().parent / "clip_weights" / "tiny_clip_aligned.safetensors")
# open_clip's default file name inside a Hugging Face hub repository when the pretrained cfg names none.
_HF_DEFAULT_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_URL_CACHE_DIR = Path("~/.cache/clip")


class PretrainedWeightsNotFoundError(FileNotFoundError):
    """Pretrained CLIP weights for a model/tag pair are not in any local cache (nothing is downloaded)."""


# CLIP weights fail like any checkpoint: unreadable, not a state dict, or made for another architecture.
ClipCheckpointError = CheckpointError


def register_local_clip_configs() -> None:
    """Make the model configs in ``monai_ext/networks/configs`` known to open_clip (idempotent)."""
    known = set(open_clip.list_models())
    if any(config.stem not in known for config in CLIP_CONFIG_DIR.glob("*.json")):
        open_clip.add_model_config(CLIP_CONFIG_DIR)


def _check_model_name(model_name: str) -> None:
    register_local_clip_configs()
    if model_name not in open_clip.list_models():
        raise ValueError(
            f"Unknown CLIP model name {model_name!r}: not an open_clip config nor one in {CLIP_CONFIG_DIR}. "
            f"Known names include {TINY_CLIP_NAME!r}, 'ViT-B-16', 'ViT-B-32', 'ViT-L-14'."
        )


@lru_cache(maxsize=None)
def get_clip_tokenizer(model_name: str = "ViT-B-16", context_length: int | None = None):
    """open_clip tokenizer of ``model_name`` (CLIP BPE for CLIP ViTs; its vocabulary ships with open_clip).

    Returns a callable: ``tokenizer(list_of_str) -> LongTensor [N, context_length]``.

    Example::

        tokens = get_clip_tokenizer(TINY_CLIP_NAME)(["Bilateral pulmonary infection."])  # [1, 77]
    """
    _check_model_name(model_name)
    return open_clip.get_tokenizer(model_name, context_length=context_length)


def _hf_cache_dirs(cache_dir: str | os.PathLike | None) -> list[Path]:
    """Hugging Face hub cache roots, resolved from the environment at call time (not at import)."""
    roots = []
    if cache_dir is not None:
        roots.append(Path(cache_dir).expanduser())
    if os.environ.get("HF_HUB_CACHE"):
        roots.append(Path(os.environ["HF_HUB_CACHE"]).expanduser())
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache")), "huggingface"
    )
    roots.append(Path(hf_home).expanduser() / "hub")
    return list(dict.fromkeys(roots))


def _hf_snapshot_candidates(root: Path, repo_id: str, filename: str) -> list[Path]:
    """Files of ``repo_id`` in a hub cache: ``models--org--name/snapshots/<revision>/<filename>``."""
    snapshots = root / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    if not snapshots.is_dir():
        return [snapshots / "<revision>" / filename]
    return sorted(snapshots.glob(f"*/{filename}")) or [snapshots / "<revision>" / filename]


def find_pretrained_weights(
    model_name: str, pretrained: str, cache_dir: str | os.PathLike | None = None
) -> tuple[Path | None, list[str]]:
    """Look for the weights of an open_clip ``model_name``/``pretrained`` tag pair in local caches only.

    Returns ``(path or None, list of locations looked at)``. The locations are, in order: the hub-cache files named by
    open_clip's pretrained config (``.safetensors`` preferred) under ``cache_dir``, ``$HF_HUB_CACHE`` and
    ``$HF_HOME/hub``; the URL download name under ``cache_dir`` and ``~/.cache/clip``; and the flat names
    ``<model_name>-<pretrained>.{safetensors,bin,pt}`` in those two folders.
    """
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise ValueError(
            f"{pretrained!r} is not an open_clip pretrained tag of {model_name!r} (known tags: {tags or 'none'}). "
            "Pass a local weights file as checkpoint=... instead."
        )
    looked: list[Path] = []
    if cfg.get("hf_hub"):
        # open_clip writes "org/repo/filename" or "org/repo/" (default file name).
        repo_id, filename = os.path.split(cfg["hf_hub"])
        names = [filename] if filename else list(_HF_DEFAULT_WEIGHTS)
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename.rsplit(".", 1)[0] + ".safetensors")
        for root in _hf_cache_dirs(cache_dir):
            for name in names:
                looked.extend(_hf_snapshot_candidates(root, repo_id, name))
    flat_dirs = [Path(cache_dir).expanduser()] if cache_dir is not None else []
    flat_dirs.append(_URL_CACHE_DIR.expanduser())
    for folder in flat_dirs:
        if cfg.get("url"):
            looked.append(folder / os.path.basename(cfg["url"]))
        looked.extend(folder / f"{model_name}-{pretrained}{ext}" for ext in (".safetensors", ".bin", ".pt"))
    for candidate in looked:
        if candidate.is_file():
            return candidate, [str(p) for p in looked]
    return None, [str(p) for p in looked]


# Entries of OpenAI's TorchScript CLIP that are settings, not weights (open_clip drops them the same way).
_OPENAI_JIT_SETTINGS = ("input_resolution", "context_length", "vocab_size")


def _is_torchscript_archive(path: Path) -> bool:
    """A ``torch.jit.save`` zip (it holds ``<name>/code/`` and ``constants.pkl``; a ``torch.save`` zip does not)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 2)[1:2] == ["constants.pkl"] for name in archive.namelist())


def _read_without_pickle(path: Path, source: str) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file or of an OpenAI TorchScript archive (float32, settings dropped)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
        return {k: v.float() for k, v in state.items() if k not in _OPENAI_JIT_SETTINGS}
    except Exception as err:  # safetensors and TorchScript raise various types on corrupt files
        detail = str(err).splitlines()[0][:200] if str(err) else "no detail"
        raise CheckpointError(f"Cannot read {source} ({type(err).__name__}: {detail}).") from err


def load_clip_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a CLIP state dict from ``.safetensors``, a ``torch.save`` file (read with
    :func:`monai_ext.checkpoint.safe_torch_load`) or an OpenAI TorchScript archive (the ``ViT-B-16.pt`` that OpenAI's
    ``clip`` package downloads).

    Accepts a bare state dict, a checkpoint dict holding one (``{"state_dict": ...}``, see
    :func:`monai_ext.checkpoint.extract_state_dict`) and DataParallel ``module.`` prefixes. A TorchScript archive is
    opened with ``torch.jit.load`` (no Python pickle runs; its code is never called) and only its tensors are kept.

    Raises:
        CheckpointNotFoundError: the file does not exist (a ``FileNotFoundError``).
        CheckpointError: the file cannot be read safely or holds no state dict.
    """
    path = Path(path).expanduser()
    source = f"CLIP checkpoint '{path}'"
    if not path.exists():
        raise CheckpointNotFoundError(path)
    if path.suffix == ".safetensors" or _is_torchscript_archive(path):
        checkpoint = _read_without_pickle(path, source)
    else:
        checkpoint = safe_torch_load(path)
    return strip_wrapper_prefix(extract_state_dict(checkpoint, source=source))


def _load_weights(model: torch.nn.Module, path: Path, model_name: str) -> None:
    """Load ``path`` into ``model`` strictly; name the model and the mismatching keys when it does not fit."""
    state_dict = load_clip_state_dict(path)
    # Same adjustments as open_clip.load_checkpoint: scalar/1-d logit_scale and other grid/context sizes.
    for key in ("logit_scale", "logit_bias"):
        target = getattr(model, key, None)
        if key in state_dict and target is not None and state_dict[key].ndim != target.ndim:
            state_dict[key] = state_dict[key].reshape(target.shape)
    expected = model.state_dict()
    # Buffers the model does not save (open_clip's attn_mask) may be in files written by tracing; they carry nothing.
    for key in set(dict(model.named_buffers())) - set(expected):
        state_dict.pop(key, None)
    if set(state_dict) == set(expected):  # resizing is for the right architecture at another resolution only
        open_clip.model.resize_pos_embed(state_dict, model)
        open_clip.model.resize_text_pos_embed(state_dict, model)
    load_state_dict_checked(model, state_dict, expected_network=model_name, source=f"CLIP checkpoint '{path}'")


@contextmanager
def _without_open_clip_random_init_warning():
    """Hide open_clip's "initialized randomly" root-logger warning: weights are loaded (or warned about) here."""

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded for model")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def create_clip(
    model_name: str = "ViT-B-16",
    pretrained: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """Build an open_clip CLIP model without touching the network.

    Args:
        model_name: open_clip architecture (``"ViT-B-16"``) or :data:`TINY_CLIP_NAME`.
        pretrained: open_clip pretrained tag (``"openai"``, ``"laion2b_s34b_b88k"``) looked up in local caches only.
        checkpoint: local weights file (``.safetensors``, or a state dict saved by ``torch.save``); takes precedence
            over ``pretrained``.
        cache_dir: extra folder searched for pretrained weights (hub-cache layout or flat files).
        device: where the model is placed.

    Returns:
        The open_clip model in eval mode.

    Raises:
        PretrainedWeightsNotFoundError: ``pretrained`` weights are not cached locally.
        FileNotFoundError / CheckpointError: ``checkpoint`` is missing, unreadable or does not fit ``model_name``.

    Example::

        clip = create_clip(TINY_CLIP_NAME)  # random weights
        clip = create_clip("ViT-B-16", checkpoint="weights/vit_b_16_openai.safetensors")
    """
    _check_model_name(model_name)
    weights_path: Path | None = None
    preprocess_cfg: dict = {}
    quick_gelu = False
    if checkpoint is not None:
        weights_path = Path(checkpoint).expanduser()
        if not weights_path.exists():  # before building the model
            raise CheckpointNotFoundError(weights_path, hint=f"It was given as the weights of CLIP {model_name!r}.")
    elif pretrained is not None:
        weights_path, looked = find_pretrained_weights(model_name, pretrained, cache_dir)
        if weights_path is None:
            where = "\n  ".join(looked)
            raise PretrainedWeightsNotFoundError(
                f"Pretrained CLIP weights {model_name!r} / {pretrained!r} are not in any local cache (nothing is "
                f"downloaded). Looked for:\n  {where}\nTo provide them: on a machine with internet run "
                f"`python -c \"import open_clip; open_clip.create_model('{model_name}', pretrained='{pretrained}')\"` "
                "and copy its Hugging Face cache (~/.cache/huggingface/hub) here, or copy the weights file to "
                f"{Path(cache_dir or _URL_CACHE_DIR).expanduser() / f'{model_name}-{pretrained}.safetensors'}, "
                "or pass checkpoint='/path/to/weights'."
            )
        tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
        preprocess_cfg = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
        quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    with _without_open_clip_random_init_warning():
        model = open_clip.create_model(
            model_name,
            pretrained=None,
            force_quick_gelu=quick_gelu,
            force_preprocess_cfg=preprocess_cfg or None,
            pretrained_text=False,
        )
    if weights_path is None:
        logger.warning(
            "CLIP %r starts from random weights (no pretrained tag or checkpoint given): right when a bundle checkpoint "
            "that holds them is loaded next (inference, the demo), wrong for training a real model.",
            model_name,
        )
    else:
        _load_weights(model, weights_path, model_name)
        logger.info("Loaded CLIP %r weights from %s", model_name, weights_path)
    return model.to(device).eval()
